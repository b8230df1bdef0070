"""Save a compressed model as a ``torch.export`` ``.pt2`` archive (weights and graph, no pickled code).

The example input may be a tensor, a tuple of positional tensors or a dict of keyword tensors
(``{"input_ids": ..., "attention_mask": ...}`` for a Hugging Face model). A model whose output is
not one tensor -- a ``ModelOutput`` holding ``logits`` and a ``DynamicCache``, which torch.export
cannot return -- is exported through a thin wrapper that returns the one tensor
:func:`dldebug.model_io.select_output` picks (``logits``, else ``last_hidden_state``, else the
first tensor, or what ``output=`` names). The archive then maps the same inputs to that tensor.

Load it back with ``dldebug.io.load_model("model.pt2")`` (refuses pickled
objects) or ``torch.export.load("model.pt2").module()``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dldebug.errors import DldebugError, InputError
from dldebug.model_io import Batch, OutputSpec, describe, select_output
from dldebug.report.atomic import write_with

__all__ = ["SelectedOutput", "export_model", "save_exported"]

_TOOL = "dldebug compress (export)"


class SelectedOutput(nn.Module):
    """``model``'s output reduced to the one tensor ``select_output(output, spec)`` picks."""

    def __init__(self, model: nn.Module, output: OutputSpec = None) -> None:
        super().__init__()
        self.model = model
        self.output = output

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return select_output(self.model(*args, **kwargs), self.output, tool=_TOOL)


def _named_wrapper(model: nn.Module, output: OutputSpec, names: Sequence[str]) -> SelectedOutput:
    """A :class:`SelectedOutput` whose ``forward`` lists ``names`` as its parameters.

    torch.export binds inputs to the forward's signature; with ``**kwargs`` alone it cannot attach
    dynamic shapes to them, so the signature is spelled out.
    """
    try:
        params = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in ("self", *names)]
    except ValueError:
        raise InputError(f"{_TOOL}: input names {list(names)} must be Python identifiers to become the exported "
                         "program's arguments; rename the arrays (e.g. np.savez('x.npz', input_ids=...)).") from None

    def forward(self: SelectedOutput, *args: Any, **kwargs: Any) -> torch.Tensor:
        return SelectedOutput.forward(self, *args, **kwargs)

    forward.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    cls = type("SelectedOutput", (SelectedOutput,), {"forward": forward})
    return cls(model, output)


def _two_rows(batch: Batch) -> Batch:
    """The example at batch size 2 (torch.export specialises sizes 0 and 1)."""
    size = batch.size
    if size >= 2:
        return batch.take(2)

    def grow(t: torch.Tensor) -> torch.Tensor:
        return t.expand(2, *t.shape[1:]).clone() if t.dim() > 0 and t.shape[0] == size else t
    return batch.map(grow)


def _dynamic(value: Any, size: int) -> dict[int, Any] | None:
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == size:
        return {0: torch.export.Dim.AUTO}
    return None


def _export(target: nn.Module, inputs: Any, dynamic: bool) -> torch.export.ExportedProgram:
    size = Batch(inputs).size
    if isinstance(inputs, Mapping):
        shapes = {k: _dynamic(v, size) for k, v in inputs.items()} if dynamic else None
        return torch.export.export(target, (), kwargs=dict(inputs), dynamic_shapes=shapes)
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    return torch.export.export(target, args, dynamic_shapes=tuple(_dynamic(a, size) for a in args) if dynamic
                               else None)


def _target(model: nn.Module, inputs: Any, output: OutputSpec) -> nn.Module:
    """The model itself when it returns one tensor, else a wrapper returning the selected tensor."""
    with torch.no_grad():
        raw = Batch(inputs).call(model)
    if output is None and isinstance(raw, torch.Tensor):
        return model
    select_output(raw, output, tool=_TOOL)  # a bad output= fails here, with the output's keys
    if isinstance(inputs, Mapping):
        return _named_wrapper(model, output, [str(k) for k in inputs])
    count = len(inputs) if isinstance(inputs, (tuple, list)) else 1
    return _named_wrapper(model, output, [f"input_{i}" for i in range(count)])


def export_model(model: nn.Module, example: Any, *, output: OutputSpec = None) -> torch.export.ExportedProgram:
    """``torch.export`` the model in eval mode, with a dynamic batch size when the model allows it.

    Args:
        model: the model to export.
        example: an example input batch: a tensor, a tuple of positional tensors, or a dict of keyword
            tensors (only shapes and dtypes matter; the batch is cut or repeated to 2 rows).
        output: which tensor the archive returns when the model's output is not one tensor
            (see :func:`dldebug.model_io.select_output`; default ``logits``, else the first tensor).

    Returns:
        The ``ExportedProgram``.

    Raises:
        InputError: the model cannot be called or exported with this input, or ``output`` names nothing.
    """
    inputs = _two_rows(Batch(example)).inputs
    was_training = model.training
    model.eval()
    try:
        try:
            target = _target(model, inputs, output)
        except DldebugError:
            raise
        except Exception as exc:
            raise InputError(f"{_TOOL}: the model failed on the example input {describe(example)}: "
                             f"{type(exc).__name__}: {_first_line(exc)}. Check --input / --calib.") from None
        try:
            try:
                return _export(target, inputs, dynamic=True)
            except Exception:  # a model whose graph fixes the batch size: export that shape
                return _export(target, example, dynamic=False)
        except Exception as exc:
            raise InputError(f"torch.export could not trace the compressed model with the input "
                             f"{describe(example)}: {_first_line(exc)}. Check the --input shape.") from None
    finally:
        model.train(was_training)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def save_exported(model: nn.Module, example: Any, path: str | Path, *, output: OutputSpec = None) -> Path:
    """Export ``model`` (see :func:`export_model`) and write the ``.pt2`` archive atomically; returns the path."""
    program = export_model(model, example, output=output)
    return write_with(path, lambda handle: torch.export.save(program, handle))
