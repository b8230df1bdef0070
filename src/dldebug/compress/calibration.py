"""Record what each layer sees: its input rows on calibration data.

A linear layer's output error ``||(W - W') x||`` depends on the inputs ``x``
only through their second moment, so a sample of input rows per layer is all
the data-aware factorisation and the output-error measurements need.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from dldebug.arguments import received
from dldebug.errors import DldebugError, InputError
from dldebug.model_io import Batch, describe, parameters_device

__all__ = ["CalibData", "collect_layer_inputs"]

CalibData = torch.Tensor | tuple | list | Mapping[str, Any] | Iterable[Any]
MAX_ELEMENTS = 1 << 24  # per layer: 64 MiB of float32 rows (e.g. 668 rows of VGG fc6's 25088 inputs)
MAX_ROWS = 8192
_TOOL = "compress_linear_layers calib_data"


def _batches(calib_data: CalibData) -> list[Batch]:
    """Normalise calib data to a list of batches the model is called on.

    One batch: a tensor, a tuple of tensors (positional inputs) or a mapping (keyword inputs, e.g. a
    tokenizer's ``BatchEncoding``). Otherwise an iterable of batches, each a tensor, an
    ``(inputs, labels)`` pair (the labels are not fed) or a mapping (fed as keyword arguments).
    """
    if isinstance(calib_data, np.ndarray):
        raise InputError(f"calib_data must be torch tensors; got {received(calib_data)}. Convert it with "
                         "torch.from_numpy(array).float() (the dtype the model takes).")
    if isinstance(calib_data, torch.Tensor):
        return [Batch(calib_data)]
    if isinstance(calib_data, tuple) and calib_data and all(isinstance(t, torch.Tensor) for t in calib_data):
        return [Batch(tuple(calib_data))]
    if isinstance(calib_data, Mapping):
        return [Batch.from_user(calib_data, tool=_TOOL, needs_targets=False)]
    if isinstance(calib_data, (str, bytes)) or not isinstance(calib_data, Iterable):
        raise InputError(f"calib_data must be a tensor or a dict of keyword inputs (one batch), a tuple of "
                         f"tensors (one batch of positional inputs) or an iterable of batches (e.g. a "
                         f"DataLoader); got {describe(calib_data)}.")
    out = []
    for index, batch in enumerate(calib_data):
        if not isinstance(batch, (torch.Tensor, Mapping, tuple, list)):
            raise InputError(f"each calibration batch must be a tensor, an (inputs, labels) pair or a dict of "
                             f"keyword inputs; batch {index} is {describe(batch)}.")
        out.append(Batch.from_user(batch, tool=_TOOL, needs_targets=False))
    if not out:
        raise InputError("calib_data is empty; give at least one batch of inputs.")
    return out


def _run(model: nn.Module, batches: list[Batch]) -> None:
    """Run the model on every batch (on the model's device); a failure names the batch."""
    device = parameters_device(model)
    for index, batch in enumerate(batches):
        try:
            batch.to(device).call(model)
        except DldebugError:
            raise
        except Exception as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"the model failed on calibration batch {index} ({describe(batch.inputs)}): "
                             f"{type(exc).__name__}: {detail}. Give calib_data in the form the model is called "
                             "with: a tensor, a tuple of positional inputs, or a dict of keyword inputs.") from None


def _rows(name: str, module: nn.Module, x: Any) -> torch.Tensor:
    """The layer input as (rows, in_features); a shape the layer cannot take is one InputError."""
    conv = isinstance(module, nn.Conv2d)
    usable = isinstance(x, torch.Tensor) and (x.ndim in (3, 4) if conv else x.ndim >= 1)
    channel = (0 if x.ndim == 3 else 1) if conv and usable else -1  # a conv's input may be unbatched (C, H, W)
    if not usable or x.shape[channel] == 0:
        got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else received(x)
        expected = "(N, channels, H, W)" if conv else "(N, features...) with at least one feature"
        raise InputError(f"calib_data must be a batch of inputs; layer {name!r} expects {expected} but received "
                         f"{got}. Give calib_data in the form the model is called with, e.g. a tensor of shape "
                         "(batch, in_features).")
    return x.detach().movedim(channel, -1).reshape(-1, x.shape[channel])


def _checked_rows(name: str, parts: list[torch.Tensor]) -> torch.Tensor:
    """All rows a layer received; none, or NaN/inf among them, is one InputError."""
    if not parts:
        raise InputError(f"layer {name!r} was never called on calib_data, so its output error cannot be "
                         "measured. Check that the calibration batches run through it, or leave it out "
                         "with layers=[...].")
    rows = torch.cat(parts)
    if rows.shape[0] == 0:
        raise InputError(f"calib_data gave layer {name!r} no input rows (every batch is empty); give at least "
                         "one sample.")
    bad = int((~torch.isfinite(rows)).sum())
    if bad:
        raise InputError(f"layer {name!r} received {bad:,} NaN/inf input value(s) on calib_data; output errors "
                         "cannot be measured on them. Remove NaN/inf from calib_data (or fix the layers before "
                         f"{name!r}, which produce them).")
    return rows


def collect_layer_inputs(model: nn.Module, modules: Mapping[str, nn.Module], calib_data: CalibData,
                         *, seed: int = 0) -> dict[str, torch.Tensor]:
    """Input rows of each named module on ``calib_data`` (a seeded sample if there are many).

    A module called several times per forward pass (a shared layer) gets the
    rows of every call. The model runs in eval mode without gradients; its
    training flag is restored afterwards.

    Args:
        model: the model to run.
        modules: name -> module (``nn.Linear``, transformers ``Conv1D`` or 1x1 ``nn.Conv2d``) to record.
        calib_data: one batch (a tensor, a tuple of positional input tensors, a dict of keyword inputs) or
            an iterable of batches (tensors, ``(inputs, labels)`` pairs or dicts; a DataLoader).
        seed: seeds the row sample.

    Returns:
        name -> float32 tensor of shape ``(rows, in_features)``.

    Raises:
        InputError: unusable calibration data (a numpy array, a 0-d tensor, no feature, no rows, NaN/inf
            inputs), a batch the model fails on, or a layer the data never reached.
    """
    batches = _batches(calib_data)
    captured: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
    handles = []
    for name, module in modules.items():
        def hook(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], _name: str = name) -> None:
            x = args[0] if args else next(iter(kwargs.values()), None)
            captured[_name].append(_rows(_name, mod, x).float().cpu())
        handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _run(model, batches)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, parts in captured.items():
        rows = _checked_rows(name, parts)
        limit = max(256, min(MAX_ROWS, MAX_ELEMENTS // rows.shape[1]))
        if rows.shape[0] > limit:
            rows = rows[torch.randperm(rows.shape[0], generator=generator)[:limit]]
        out[name] = rows
    return out
