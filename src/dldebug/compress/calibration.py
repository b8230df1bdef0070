"""Record what each layer sees: its input rows on calibration data.

A linear layer's output error ``||(W - W') x||`` depends on the inputs ``x``
only through their second moment, so a sample of input rows per layer is all
the data-aware factorisation and the output-error measurements need.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from dldebug.errors import InputError

__all__ = ["CalibData", "collect_layer_inputs"]

CalibData = torch.Tensor | tuple | list | Iterable[Any]
MAX_ELEMENTS = 1 << 24  # per layer: 64 MiB of float32 rows (e.g. 668 rows of VGG fc6's 25088 inputs)
MAX_ROWS = 8192


def _batches(calib_data: CalibData) -> list[tuple[Any, ...]]:
    """Normalise calib data to a list of positional-argument tuples."""
    if isinstance(calib_data, torch.Tensor):
        return [(calib_data,)]
    if isinstance(calib_data, tuple) and calib_data and all(isinstance(t, torch.Tensor) for t in calib_data):
        return [calib_data]
    if isinstance(calib_data, (str, bytes, Mapping)) or not isinstance(calib_data, Iterable):
        raise InputError(f"calib_data must be a tensor (one batch), a tuple of tensors (one batch of "
                         f"positional inputs) or an iterable of batches (e.g. a DataLoader); got "
                         f"{type(calib_data).__name__}.")
    out = []
    for batch in calib_data:
        if isinstance(batch, torch.Tensor):
            out.append((batch,))
        elif isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
            out.append((batch[0],))  # (inputs, labels) pairs from a DataLoader: feed the inputs
        else:
            raise InputError(f"each calibration batch must be a tensor or an (inputs, labels) pair; got "
                             f"{type(batch).__name__}.")
    if not out:
        raise InputError("calib_data is empty; give at least one batch of inputs.")
    return out


def _rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(module, nn.Conv2d):  # every pixel is one input vector of the 1x1 conv
        return x.detach().movedim(1, -1).reshape(-1, x.shape[1])
    return x.detach().reshape(-1, x.shape[-1])


def collect_layer_inputs(model: nn.Module, modules: Mapping[str, nn.Module], calib_data: CalibData,
                         *, seed: int = 0) -> dict[str, torch.Tensor]:
    """Input rows of each named module on ``calib_data`` (a seeded sample if there are many).

    A module called several times per forward pass (a shared layer) gets the
    rows of every call. The model runs in eval mode without gradients; its
    training flag is restored afterwards.

    Args:
        model: the model to run.
        modules: name -> module (``nn.Linear`` or 1x1 ``nn.Conv2d``) to record.
        calib_data: a batch tensor, a tuple of positional input tensors, or an iterable of batches.
        seed: seeds the row sample.

    Returns:
        name -> float32 tensor of shape ``(rows, in_features)``.

    Raises:
        InputError: unusable calibration data, or a layer the data never reached.
    """
    batches = _batches(calib_data)
    captured: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
    handles = []
    for name, module in modules.items():
        def hook(mod: nn.Module, args: tuple[Any, ...], _name: str = name) -> None:
            captured[_name].append(_rows(mod, args[0]).float().cpu())
        handles.append(module.register_forward_pre_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for args in batches:
                model(*args)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, parts in captured.items():
        if not parts:
            raise InputError(f"layer {name!r} was never called on calib_data, so its output error cannot be "
                             "measured. Check that the calibration batches run through it, or leave it out "
                             "with layers=[...].")
        rows = torch.cat(parts)
        limit = max(256, min(MAX_ROWS, MAX_ELEMENTS // rows.shape[1]))
        if rows.shape[0] > limit:
            rows = rows[torch.randperm(rows.shape[0], generator=generator)[:limit]]
        out[name] = rows
    return out
