"""Save a compressed model as a ``torch.export`` ``.pt2`` archive (weights and graph, no pickled code).

Load it back with ``dldebug.io.load_model("model.pt2")`` (refuses pickled
objects) or ``torch.export.load("model.pt2").module()``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dldebug.errors import InputError
from dldebug.report.atomic import write_with

__all__ = ["export_model", "save_exported"]


def export_model(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """``torch.export`` the model in eval mode, with a dynamic batch size when the model allows it.

    Args:
        model: the model to export.
        example: an example input batch (only its shape and dtype matter beyond batch 2).

    Raises:
        InputError: the model cannot be exported with this input.
    """
    batch = example[:2] if example.shape[0] >= 2 else example.expand(2, *example.shape[1:]).clone()
    was_training = model.training
    model.eval()
    try:
        try:
            return torch.export.export(model, (batch,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
        except Exception:  # a model whose graph fixes the batch size: export that shape
            return torch.export.export(model, (example,))
    except Exception as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"torch.export could not trace the compressed model with an input of shape "
                         f"{tuple(example.shape)}: {detail}. Check the --input shape.") from None
    finally:
        model.train(was_training)


def save_exported(model: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """Export ``model`` and write the ``.pt2`` archive atomically; returns the path."""
    program = export_model(model, example)
    return write_with(path, lambda handle: torch.export.save(program, handle))
