"""Why a layer breaks equivariance, in words -- checked against oracles where a guess could be wrong.

* A zero-padded convolution under a shift that lands on its grid: is the error the padding (the
  border sees zeros instead of wrapped content) or the stride? The oracle runs that convolution
  alone, switched to ``padding_mode="circular"``, on the input it saw under the probe and on that
  input shifted back (the layers before it are equivariant: it is the first break; checked through
  the layer's own output). Exact then, the padding it is. Where that check fails (a functional op
  before the layer broke it), the whole model is re-run with the convolution switched.
* A break first seen at a pointwise layer (dropout, a norm, an activation) happened before it, in
  functional code of the enclosing module's ``forward()``. Where that module holds position
  embeddings (ViT), the oracle zeroes them: exact then, they are the cause. The pointwise layer is
  never blamed.
* "Global pooling" is said only where a pooling layer (or a pooling/mean function) reduces the map
  to one position; spatial axes that vanish in ``forward()`` (a class token ``x[:, 0]``) are named so.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dldebug.checks.geometry import Cell, Probe, expected_output, relative_error
from dldebug.checks.layers import CONVOLUTIONS, POOLING, Op

__all__ = ["Cause", "Measure", "SeenInput", "explain", "zero_padded"]

# the error of one layer under one probe, measured on a variant of the model (None: not measurable)
Measure = Callable[[nn.Module, Probe], float | None]

# Layers that act per position (or with statistics over all positions): they commute with shifts,
# flips and rotations, so a break first seen at one of them happened before it.
_POINTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid,
              nn.Tanh, nn.Softmax, nn.LogSoftmax, nn.Identity, nn.Dropout, nn.Dropout2d, nn.BatchNorm1d,
              nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm2d, nn.GroupNorm, nn.LayerNorm)
_POINTWISE_NAMES = ("Dropout", "Norm", "Activation", "GELU", "ReLU", "SiLU", "Swish", "Tanh", "Identity")
_POSITION_NAMES = ("position_embedding", "pos_embed", "position_embeddings", "positional_embedding")
_FLATTEN = ("flatten", "view", "reshape", "linear")
_POOL_FUNCTIONS = ("pool", "mean", "amax", "amin", "sum")


@dataclass(frozen=True)
class Cause:
    """What breaks the property at a layer, the fix, and the oracle's numbers behind the verdict."""

    text: str
    fix: str
    evidence: dict[str, Any] = field(default_factory=dict)
    at: str | None = None  # the module to blame when it is not the row where the break shows (its parent)


def _is_pointwise(module: Op | None) -> bool:
    if module is None or isinstance(module, str):
        return False
    return isinstance(module, _POINTWISE) or any(n in type(module).__name__ for n in _POINTWISE_NAMES)


def _strided(module: nn.Module) -> int:
    stride = getattr(module, "stride", 1)
    return max(stride) if isinstance(stride, tuple) else int(stride)


def zero_padded(module: Op) -> bool:
    """A convolution module with zero padding: a candidate for the circular-padding oracle."""
    if not isinstance(module, nn.Module):
        return False
    padding = getattr(module, "padding", 0)
    padded = padding == "same" or (any(p > 0 for p in padding) if isinstance(padding, tuple) else padding > 0)
    return (isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and padded
            and getattr(module, "padding_mode", "zeros") == "zeros")


def _is_patchify(module: nn.Module) -> bool:
    kernel, stride = getattr(module, "kernel_size", None), getattr(module, "stride", None)
    padding = getattr(module, "padding", None)
    return kernel == stride and _strided(module) > 1 and padding in (0, (0,), (0, 0), (0, 0, 0), "valid")


def _variant(model: nn.Module, edit: Callable[[nn.Module], None]) -> nn.Module:
    variant = copy.deepcopy(model)
    with torch.no_grad():
        edit(variant)
    return variant


@dataclass(frozen=True)
class SeenInput:
    """What a layer saw: its input under the probe, its output on the untransformed input, the model's input."""

    moved: torch.Tensor
    reference_output: torch.Tensor
    x: torch.Tensor


def _circular_oracle(model: nn.Module, name: str, probe: Probe, tolerance: float, measure: Measure,
                     seen: SeenInput | None) -> float | None:
    def circular(variant: nn.Module) -> None:
        variant.get_submodule(name).padding_mode = "circular"  # type: ignore[assignment]

    try:
        local = None if seen is None else _layer_circular_oracle(model.get_submodule(name), probe, tolerance, seen)
        return local if local is not None else measure(_variant(model, circular), probe)
    except Exception:  # e.g. a padding wider than the map: circular padding cannot run there
        return None


def _layer_circular_oracle(module: nn.Module, probe: Probe, tolerance: float, seen: SeenInput) -> float | None:
    """The error of ``module`` alone with circular padding, on its input under ``probe`` and that input shifted back.

    None when the input shifted back is not the input of the untransformed pass (checked through the
    layer's own output): something before the layer, outside any watched module, broke the property,
    and only a run of the whole model can tell. ``forward`` is called directly, so hooks on the module
    (and process-wide ones) do not see the oracle.
    """
    back = expected_output(seen.moved, seen.x, Probe(probe.transform, -probe.shift))
    if not isinstance(back, torch.Tensor):
        return None
    layer = copy.deepcopy(module)
    with torch.no_grad():
        if relative_error(layer.forward(back), seen.reference_output) > tolerance:
            return None
        layer.padding_mode = "circular"  # type: ignore[assignment]
        moved, reference = layer.forward(seen.moved), layer.forward(back)
    expected = expected_output(reference, seen.x, probe)
    return relative_error(moved, expected) if isinstance(expected, torch.Tensor) else None


def _position_tables(model: nn.Module, parent: str) -> list[str]:
    """Names of position-embedding parameters/buffers held by ``parent`` itself."""
    try:
        module = model.get_submodule(parent) if parent else model
    except AttributeError:
        return []
    own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
    names = [n for n, t in own if any(p in n for p in _POSITION_NAMES) and t.is_floating_point()]
    for child_name, child in module.named_children():  # an nn.Embedding called position_embeddings
        if isinstance(child, nn.Embedding) and any(p in child_name for p in _POSITION_NAMES):
            names.append(f"{child_name}.weight")
    return [f"{parent}.{n}" if parent else n for n in names]


def _position_oracle(model: nn.Module, tables: list[str], probe: Probe, measure: Measure) -> float | None:
    def zero(variant: nn.Module) -> None:
        state = dict(variant.named_parameters()) | dict(variant.named_buffers())
        for name in tables:
            state[name].zero_()

    try:
        return measure(_variant(model, zero), probe)
    except Exception:
        return None


def explain(model: nn.Module, name: str, module: Op | None, cell: Cell, probe: Probe, *, tolerance: float,
            measure: Measure, input_flat: bool, seen: SeenInput | None = None) -> Cause:
    """The cause of the first break at layer ``name`` (its module, or a function name in fx graphs).

    Args:
        model: the probed model (oracles run on deep copies of it).
        name: the layer's module name (``""`` for the model output).
        module: the module or function name; None for the model output.
        cell: what was measured there.
        probe: the probe that broke it.
        tolerance: the error above which a layer counts as broken.
        measure: runs the probe on a variant of the model and returns this layer's error.
        input_flat: the layer's input already had no spatial axes.
        seen: what the layer saw (a zero-padded convolution: the oracle then re-runs that layer alone).
    """
    if isinstance(module, str):
        return _function_cause(module, cell, probe)
    if cell.collapsed and module is not None:
        return _collapse_cause(module, cell, input_flat, _parent(name))
    if isinstance(module, POOLING):
        stride = _strided(module)
        return Cause(f"pooling (down-sampling{f' by {stride}' if stride > 1 else ''})",
                     "for dense prediction drop the pooling or up-sample with skip connections (U-Net); "
                     "blur before sub-sampling (Zhang 2019) to reduce aliasing")
    if isinstance(module, CONVOLUTIONS) and not (cell.cannot and _strided(module) == 1):
        return _conv_cause(model, name, module, cell, probe, tolerance, measure, seen)
    if cell.cannot or module is None or _is_pointwise(module):
        return _before_cause(model, name, cell, probe, tolerance, measure)
    return Cause(f"{type(module).__name__} is not equivariant", "check this layer's operation")


def _parent(name: str) -> str:
    return name.rpartition(".")[0]


def _conv_cause(model: nn.Module, name: str, module: nn.Module, cell: Cell, probe: Probe, tolerance: float,
                measure: Measure, seen: SeenInput | None) -> Cause:
    stride = _strided(module)
    evidence: dict[str, Any] = {}
    if probe.transform == "translate" and cell.error is not None and zero_padded(module):
        circular = _circular_oracle(model, name, probe, tolerance, measure, seen)
        evidence["circular_padding_error"] = circular
        if circular is not None and circular <= tolerance:
            return Cause(f"zero padding at the border (the map's edges see zeros, not the shifted content; with "
                         f"padding_mode='circular' this layer is exact: error {circular:.2g})",
                         "ignore a border band in the loss, or use padding_mode='circular' where the signal wraps",
                         evidence)
    if stride > 1 and _is_patchify(module) and probe.transform == "translate":
        return Cause(f"patch embedding (a stride-{stride} convolution into {stride}-pixel patches): only shifts by "
                     "whole patches can be equivariant",
                     f"probe with shifts that are multiples of the patch size (shifts=({stride},)) to test the rest "
                     "of the model; for dense outputs up-sample the patch tokens back to pixels", evidence)
    if stride > 1 and not _is_patchify(module):
        return Cause(f"strided convolution (stride {stride})",
                     "use stride 1 (dilated convolutions keep the receptive field) or blur-pool before striding",
                     evidence)
    if probe.transform != "translate":
        return Cause(f"learned filters are not {'mirror' if probe.transform == 'hflip' else 'rotation'}-symmetric",
                     "train with flip/rotation augmentation, or use group-equivariant convolutions", evidence)
    if "circular_padding_error" in evidence:
        return Cause(f"{type(module).__name__} is not equivariant even with circular padding", "check this layer",
                     evidence)
    return Cause("padding at the border (zero padding; the map's edges are not shifted content)",
                 "ignore a border band in the loss, or use padding_mode='circular' where the signal wraps", evidence)


def _collapse_cause(module: nn.Module, cell: Cell, input_flat: bool, parent: str) -> Cause:
    keep = "keep the network fully convolutional (1x1 convolutions instead of flatten + linear)"
    if isinstance(module, nn.Flatten):
        return Cause("flatten + linear: the map has no spatial axes left", keep)
    if isinstance(module, POOLING):
        return Cause("global pooling: the map has no spatial extent left",
                     "for dense outputs drop the global pooling; up-sample back to the input resolution")
    if input_flat:
        where = f"'{parent}'" if parent else "the model"
        return Cause(f"the spatial axes are gone before this layer: a reduction, flatten or token selection (such as "
                     f"the class token x[:, 0]) in {where}'s forward()",
                     "for dense outputs keep every position (all tokens, or the full map) up to the output")
    return Cause(f"{type(module).__name__} leaves no spatial axes", keep)


def _before_cause(model: nn.Module, name: str, cell: Cell, probe: Probe, tolerance: float,
                  measure: Measure) -> Cause:
    """The layer commutes with the transform: the break happened before it, in its parent's forward()."""
    parent = _parent(name) if name else ""
    tables = _position_tables(model, parent) if probe.transform == "translate" and not cell.cannot else []
    if tables:
        zeroed = _position_oracle(model, tables, probe, measure)
        if zeroed is not None and zeroed <= tolerance:
            owner = f"'{parent}' ({type(model.get_submodule(parent)).__name__})" if parent else "the model"
            return Cause(f"position embeddings ({', '.join(tables)}) added in {owner}: a learned vector per "
                         f"position, so shifted content meets other position codes (with them zeroed the layer is "
                         f"exact: error {zeroed:.2g})",
                         "expected for absolute position embeddings (ViT); for a shift-equivariant dense model use "
                         "relative or convolutional position encodings",
                         {"position_embeddings": ", ".join(tables), "error_without_position_embeddings": zeroed},
                         at=parent or None)
    what = "down-sampling" if cell.cannot else "an operation"
    if parent:
        where = "inside its forward(), outside any of its submodules"
    else:
        where = f"outside any module before {'the output' if not name else 'this layer'}"
    return Cause(f"{what} {where} (a functional call in forward(), e.g. F.max_pool2d, or an exported graph)",
                 "look at that forward() between the previous layer and this one; keep dense outputs at the "
                 "input's resolution", at=parent or None)


def _function_cause(name: str, cell: Cell, probe: Probe) -> Cause:
    """The cause at a function or method called in forward() (seen in torch.fx graphs)."""
    if cell.collapsed and any(f in name for f in _FLATTEN):
        return Cause(f"flatten + linear ({name}() in forward()): the map has no spatial axes left",
                     "keep the network fully convolutional (1x1 convolutions instead of flatten + linear)")
    if cell.collapsed and any(f in name for f in _POOL_FUNCTIONS):
        return Cause(f"{name}() in forward() leaves no spatial extent (global pooling)",
                     "for dense outputs drop the global pooling; up-sample back to the input resolution")
    if cell.collapsed:
        return Cause(f"{name}() in forward() leaves no spatial axes",
                     "for dense outputs keep every position up to the output")
    if "pool" in name:
        return Cause(f"pooling ({name}() in forward())",
                     "for dense prediction drop the pooling or up-sample with skip connections (U-Net); "
                     "blur before sub-sampling (Zhang 2019) to reduce aliasing")
    if cell.cannot:
        return Cause(f"down-sampling ({name}() in forward())", "keep dense outputs at the input's resolution")
    if "conv" in name and probe.transform != "translate":
        return Cause(f"learned filters are not {'mirror' if probe.transform == 'hflip' else 'rotation'}-symmetric",
                     "train with flip/rotation augmentation, or use group-equivariant convolutions")
    return Cause(f"{name}() in forward() is not equivariant", "check this operation in forward()")
