"""Equivariance and invariance, layer by layer, under translations, flips and rotations (lesson 1).

A transform ``T`` of the input is mapped to each layer's resolution (``T'``): a shift of ``s``
pixels at the input is ``s * h / H`` pixels at a layer whose map is ``h`` wide for an input ``H``
wide. Where that is not a whole number the layer *cannot* be shift-equivariant. Shifts are
circular (``torch.roll``), so a net with circular padding and no striding is equivariant to float
precision; zero padding shows up as an error at the border.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import torch
from torch import fx, nn

from dldebug.checks.layers import CONVOLUTIONS, POOLING, Op, eval_mode, layer_kind, run_watched, traced
from dldebug.errors import InputError
from dldebug.findings import Finding, Report, Severity, Table

__all__ = ["probe_equivariance"]

Transform = Literal["translate", "hflip", "rot90"]
Task = Literal["dense", "classification"]
_TRANSFORMS = ("translate", "hflip", "rot90")
_OUTPUT = "(output)"
# Layers that act per position (or with statistics over all positions): they commute with shifts,
# flips and rotations, so a break first seen at one of them happened before it.
_POINTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid,
              nn.Tanh, nn.Softmax, nn.LogSoftmax, nn.Identity, nn.Dropout, nn.Dropout2d, nn.BatchNorm1d,
              nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm2d, nn.GroupNorm)


@dataclass(frozen=True)
class _Probe:
    transform: str
    shift: int = 0

    @property
    def label(self) -> str:
        return f"translate {self.shift}" if self.transform == "translate" else self.transform


@dataclass
class _Cell:
    """One layer under one probe: the relative error, or why the layer cannot be equivariant."""

    error: float | None
    cannot: str = ""  # non-empty: the layer cannot be equivariant (why)
    collapsed: bool = False  # the map has no spatial extent left (global pooling)
    skipped: str = ""  # non-empty: not comparable (a padded map is larger than the grid it came from)

    def broken(self, tolerance: float, task: str) -> bool:
        if self.skipped:
            return False
        if self.cannot:
            return True
        if self.collapsed and task == "dense":
            return True
        return self.error is not None and self.error > tolerance

    def text(self) -> float | str:
        if self.skipped:
            return f"n/a ({self.skipped})"
        return f"cannot ({self.cannot})" if self.cannot else (self.error or 0.0)


def probe_equivariance(
    model: nn.Module,
    x: torch.Tensor,
    *,
    transforms: tuple[Transform, ...] = ("translate", "hflip", "rot90"),
    shifts: tuple[int, ...] = (1, 2, 4),
    task: Task = "dense",
    tolerance: float = 1e-3,
) -> Report:
    """Measure how far each layer is from equivariant, and the output from invariant.

    Costs one forward pass for ``x`` plus one per (transform, shift): ``translate`` uses every
    shift, ``hflip`` and ``rot90`` one pass each. The model runs in eval mode, without gradients;
    its mode is restored afterwards.

    Args:
        model: a PyTorch module taking ``x``.
        x: a batch ``(N, C, H, W)`` (or ``(N, C, L)`` for sequences; ``rot90`` then skipped).
        transforms: any of ``"translate"`` (circular shift of every spatial axis), ``"hflip"``
            (flip of the last axis) and ``"rot90"`` (rotation of the last two axes, square maps).
        shifts: translation sizes in input pixels.
        task: ``"dense"`` needs equivariance (``equivariance.broken``); ``"classification"``
            needs invariance of the output (``invariance.broken``).
        tolerance: the relative error above which a layer counts as broken.

    Returns:
        A Report with tables ``equivariance.layers`` (one row per layer) and
        ``equivariance.output`` (invariance error and top-1 change rate per probe).

    Raises:
        InputError: ``x`` is not a floating batch with spatial axes, or an argument is invalid.

    Example:
        >>> net = nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular")
        >>> report = probe_equivariance(net, torch.randn(2, 1, 8, 8), transforms=("translate",))
        >>> report.has("equivariance.broken")
        False
    """
    probes, skipped = _validate(x, transforms, shifts, task, tolerance)
    with eval_mode(model), torch.no_grad():
        graph = traced(model)  # every op, functional ones too; None: forward hooks on leaf modules
        base, modules, base_out = _baseline(model, graph, x)
        cells: dict[str, dict[str, _Cell]] = {key: {} for key in base}
        cells[_OUTPUT] = {}
        output_rows = []
        scales: dict[str, float] = {}  # ||f(x)|| per layer, filled on first use
        for probe in probes:
            out = _probed_pass(model, graph, x, probe, base, cells, scales)
            expected = _map_transform(base_out, x, probe)
            cells[_OUTPUT][probe.label] = expected if isinstance(expected, _Cell) else _Cell(
                _relative_error(out, expected), collapsed=_collapsed(base_out, x))
            output_rows.append(_output_row(probe, out, base_out))
    shapes = {key: tuple(t.shape) for key, t in base.items()} | {_OUTPUT: tuple(base_out.shape)}
    layers = _layer_table(probes, cells, modules, shapes, task, tolerance)
    output = Table.from_records("equivariance.output", output_rows,
                                caption="At the output: invariance error ||f(Tx) - f(x)|| / ||f(x)|| and the "
                                        "share of the batch whose top-1 class changes.")
    findings = _findings(probes, cells, modules, output_rows, task, tolerance)
    return Report(findings, title=f"Equivariance probe ({task})", tables=(layers, output),
                  meta={"task": task, "tolerance": tolerance, "forward_passes": len(probes) + 1,
                        "probes": ", ".join(p.label for p in probes), "skipped": ", ".join(skipped),
                        "traced": "torch.fx" if graph is not None else "forward hooks"})


def _validate(x: Any, transforms: tuple[str, ...], shifts: tuple[int, ...], task: str,
              tolerance: float) -> tuple[list[_Probe], list[str]]:
    if not isinstance(x, torch.Tensor) or x.dim() < 3 or not x.is_floating_point():
        got = f"{type(x).__name__} of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"probe_equivariance needs a floating batch (N, C, H, W) or (N, C, L); got {got}. "
                         "Pass a few real input images as a float tensor.")
    unknown = [t for t in transforms if t not in _TRANSFORMS]
    if unknown or not transforms:
        raise InputError(f"Unknown transform(s) {unknown or list(transforms)}; choose from {list(_TRANSFORMS)}.")
    if task not in ("dense", "classification"):
        raise InputError(f"task must be 'dense' or 'classification'; got {task!r}.")
    if not shifts or any(not isinstance(s, int) or s <= 0 for s in shifts):
        raise InputError(f"shifts must be positive whole pixel counts such as (1, 2, 4); got {shifts!r}.")
    if not tolerance > 0:
        raise InputError(f"tolerance must be > 0; got {tolerance!r}.")
    probes: list[_Probe] = []
    skipped: list[str] = []
    for transform in dict.fromkeys(transforms):
        if transform == "translate":
            probes.extend(_Probe("translate", s) for s in dict.fromkeys(shifts))
        elif transform == "rot90" and (x.dim() < 4 or x.shape[-1] != x.shape[-2]):
            skipped.append("rot90 (needs a square 2-D input)")
        else:
            probes.append(_Probe(transform))
    return probes, skipped


def _baseline(model: nn.Module, graph: fx.GraphModule | None, x: torch.Tensor
              ) -> tuple[dict[str, torch.Tensor], dict[str, Op], torch.Tensor]:
    outputs: dict[str, torch.Tensor] = {}
    modules: dict[str, Op] = {}

    def record(key: str, _name: str, module: Op, _inputs: tuple[Any, ...], output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            outputs[key] = output.detach().clone()  # clone: a later in-place op must not change it
            modules[key] = module

    out = run_watched(model, graph, x, record)
    if not isinstance(out, torch.Tensor):
        raise InputError(f"probe_equivariance needs a model that returns one tensor; got {type(out).__name__}.")
    return outputs, modules, out.detach().clone()


def _probed_pass(model: nn.Module, graph: fx.GraphModule | None, x: torch.Tensor, probe: _Probe,
                 base: dict[str, torch.Tensor], cells: dict[str, dict[str, _Cell]], scales: dict[str, float]
                 ) -> torch.Tensor:
    def compare(key: str, _name: str, module: Op, _inputs: tuple[Any, ...], output: Any) -> None:
        if key not in base or not isinstance(output, torch.Tensor) or output.shape != base[key].shape:
            return
        if _is_padding(module):  # the next layer crops back to the grid; compare there
            cells[key][probe.label] = _Cell(None, skipped="padded map")
            return
        expected = _map_transform(base[key], x, probe)
        if isinstance(expected, _Cell):
            cells[key][probe.label] = expected
            return
        if key not in scales:
            scales[key] = _norm(base[key])
        error = _relative_error(output, expected, scale=scales[key], scratch=expected is not base[key])
        cells[key][probe.label] = _Cell(error, collapsed=_collapsed(base[key], x))

    transformed = _map_transform(x, x, probe)
    assert isinstance(transformed, torch.Tensor)  # the input always maps onto itself
    return run_watched(model, graph, transformed, compare).detach()


def _is_padding(module: Op) -> bool:
    name = module if isinstance(module, str) else type(module).__name__
    return "pad" in name.lower()


def _collapsed(y: torch.Tensor, x: torch.Tensor) -> bool:
    """True when ``y`` has no spatial layout: flattened, or pooled down to a single position."""
    if y.dim() != x.dim() or y.shape[0] != x.shape[0]:
        return True
    return all(d == 1 for d in y.shape[2:]) and any(d > 1 for d in x.shape[2:])


def _map_transform(y: torch.Tensor, x: torch.Tensor, probe: _Probe) -> torch.Tensor | _Cell:
    """``T'`` applied to ``y``, a map at its own resolution; a _Cell when T' does not exist."""
    if _collapsed(y, x):
        return y  # no spatial layout left: the best it can be is invariant
    if probe.transform == "hflip":
        return y.flip(-1)
    if probe.transform == "rot90":
        if y.shape[-1] != y.shape[-2]:
            return _Cell(None, cannot="map is not square")
        return torch.rot90(y, 1, dims=(-2, -1))
    moves = []
    for size, full in zip(y.shape[2:], x.shape[2:], strict=True):
        move = Fraction(probe.shift * size, full) if size > 1 else Fraction(0)
        if move.denominator != 1:
            return _Cell(None, cannot=f"{move} px")
        moves.append(int(move))
    return torch.roll(y, shifts=tuple(moves), dims=tuple(range(2, y.dim())))


def _norm(t: torch.Tensor) -> float:
    # float32 accumulation (cascade-summed by torch) is ~10x faster than float64 and accurate to ~1e-7
    return float(torch.linalg.vector_norm(t, dtype=torch.float32 if t.element_size() < 4 else None))


def _relative_error(actual: torch.Tensor, expected: torch.Tensor, *, scale: float | None = None,
                    scratch: bool = False) -> float:
    """||actual - expected|| / ||expected||; ``scratch``: ``expected`` is a temporary that may be overwritten.

    The transforms only permute entries, so ``scale`` = ||f(x)|| (computed once per layer) = ||T'f(x)||.
    """
    scale = _norm(expected) if scale is None else scale
    diff = _norm(expected.sub_(actual) if scratch else expected - actual)
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


def _output_row(probe: _Probe, out: torch.Tensor, base_out: torch.Tensor) -> dict[str, Any]:
    top1 = None
    if out.dim() == 2 and out.shape[1] > 1:
        top1 = float((out.argmax(1) != base_out.argmax(1)).float().mean())
    return {"transform": probe.label, "invariance error": _relative_error(out, base_out),
            "top-1 change rate": top1}


def _layer_table(probes: list[_Probe], cells: dict[str, dict[str, _Cell]], modules: dict[str, Op],
                 shapes: dict[str, tuple[int, ...]], task: str, tolerance: float) -> Table:
    labels = [p.label for p in probes]
    rows = []
    for key, by_probe in cells.items():
        broken = [label for label in labels if label in by_probe and by_probe[label].broken(tolerance, task)]
        kind = layer_kind(modules[key]) if key in modules else "model output"
        rows.append((key, kind, "x".join(map(str, shapes[key][1:])),
                     *(by_probe[label].text() if label in by_probe else "not reached" for label in labels),
                     "broken: " + ", ".join(broken) if broken else "ok"))
    return Table("equivariance.layers", ("layer", "type", "shape", *labels, "verdict"), tuple(rows),
                 caption=f"Relative equivariance error ||f(Tx) - T'f(x)|| / ||f(x)|| per layer (tolerance "
                         f"{tolerance:g}). Shifts are circular and mapped to each layer's resolution; 'cannot "
                         f"(1/2 px)' means the layer cannot be shift-equivariant. Layers without spatial axes "
                         f"show their invariance error ||f(Tx) - f(x)|| / ||f(x)||.")


def _first_break(probes: list[_Probe], cells: dict[str, dict[str, _Cell]], task: str,
                 tolerance: float) -> tuple[str, _Probe, _Cell] | None:
    """The first layer (in call order) broken by any of ``probes``, with the probe and its cell."""
    for key, by_probe in cells.items():
        for probe in probes:
            cell = by_probe.get(probe.label)
            if cell is not None and cell.broken(tolerance, task):
                return key, probe, cell
    return None


def _cause(module: Op | None, cell: _Cell, probe: _Probe) -> tuple[str, str]:
    """What breaks the property at this layer, and the fix, in words."""
    if isinstance(module, str):
        return _function_cause(module, cell, probe)
    stride = getattr(module, "stride", 1)
    strided = any(s > 1 for s in (stride if isinstance(stride, tuple) else (stride,)))
    if cell.collapsed and isinstance(module, (nn.Flatten, nn.Linear)):
        return ("flatten + linear: the map has no spatial axes left",
                "keep the network fully convolutional (1x1 convolutions instead of flatten + linear)")
    if cell.collapsed:
        return ("global pooling: the map has no spatial extent left",
                "for dense outputs drop the global pooling; up-sample back to the input resolution")
    if isinstance(module, POOLING):
        return (f"pooling (down-sampling{' by ' + str(stride) if strided else ''})",
                "for dense prediction drop the pooling or up-sample with skip connections (U-Net); "
                "blur before sub-sampling (Zhang 2019) to reduce aliasing")
    if isinstance(module, CONVOLUTIONS) and strided:
        return (f"strided convolution (stride {stride})",
                "use stride 1 (dilated convolutions keep the receptive field) or blur-pool before striding")
    if isinstance(module, CONVOLUTIONS) and probe.transform != "translate":
        return (f"learned filters are not {'mirror' if probe.transform == 'hflip' else 'rotation'}-symmetric",
                "train with flip/rotation augmentation, or use group-equivariant convolutions")
    if isinstance(module, CONVOLUTIONS) and getattr(module, "padding_mode", "zeros") != "circular":
        return ("padding at the border (zero padding; the map's edges are not shifted content)",
                "ignore a border band in the loss, or use padding_mode='circular' where the signal wraps")
    if cell.cannot or module is None or isinstance(module, _POINTWISE):
        # the module itself commutes with the transform: the break happened before it, outside any module
        what = "down-sampling" if cell.cannot else "an operation"
        return (f"{what} outside any module before {'the output' if module is None else 'this layer'} (a "
                "functional call in forward(), e.g. F.max_pool2d, or an exported graph)",
                "look at forward() between the previous layer and this one; keep dense outputs at the input's "
                "resolution")
    return (f"{type(module).__name__} is not equivariant", "check this layer's operation")


def _function_cause(name: str, cell: _Cell, probe: _Probe) -> tuple[str, str]:
    """The cause at a function or method called in forward() (seen in torch.fx graphs)."""
    if cell.collapsed and name in ("flatten", "view", "reshape", "linear"):
        return (f"flatten + linear ({name}() in forward()): the map has no spatial axes left",
                "keep the network fully convolutional (1x1 convolutions instead of flatten + linear)")
    if cell.collapsed:
        return (f"{name}() in forward() leaves no spatial extent (global pooling)",
                "for dense outputs drop the global pooling; up-sample back to the input resolution")
    if "pool" in name:
        return (f"pooling ({name}() in forward())",
                "for dense prediction drop the pooling or up-sample with skip connections (U-Net); "
                "blur before sub-sampling (Zhang 2019) to reduce aliasing")
    if cell.cannot:
        return (f"down-sampling ({name}() in forward())", "keep dense outputs at the input's resolution")
    if "conv" in name and probe.transform != "translate":
        return (f"learned filters are not {'mirror' if probe.transform == 'hflip' else 'rotation'}-symmetric",
                "train with flip/rotation augmentation, or use group-equivariant convolutions")
    return (f"{name}() in forward() is not equivariant", "check this operation in forward()")


def _findings(probes: list[_Probe], cells: dict[str, dict[str, _Cell]], modules: dict[str, Op],
              output_rows: list[dict[str, Any]], task: str, tolerance: float) -> list[Finding]:
    findings = []
    for transform in dict.fromkeys(p.transform for p in probes):
        family = [p for p in probes if p.transform == transform]
        severity = Severity.WARNING if transform == "translate" else Severity.INFO
        first = _first_break(family, cells, task, tolerance)
        if task == "dense" and first is not None:
            findings.append(_equivariance_finding(first, modules, severity))
        rows = [r for r in output_rows if r["transform"] in {p.label for p in family}]
        worst = max(rows, key=lambda r: r["invariance error"])
        if task == "classification" and worst["invariance error"] > tolerance:
            findings.append(_invariance_finding(worst, first, modules, severity))
    return findings


def _equivariance_finding(first: tuple[str, _Probe, _Cell], modules: dict[str, Op],
                          severity: Severity) -> Finding:
    key, probe, cell = first
    cause, fix = _cause(modules.get(key), cell, probe)
    measured = f"error {cell.error:.3g}" if cell.error is not None else \
        f"{probe.shift} px at the input is {cell.cannot} here: it cannot be shift-equivariant"
    return Finding(
        "equivariance.broken", severity,
        f"Layer {key!r} is the first to break {probe.transform} equivariance ({probe.label}: {measured}): {cause}.",
        {"layer": key, "type": layer_kind(modules[key]) if key in modules else "model output",
         "transform": probe.transform, "shift": probe.shift if probe.transform == "translate" else None,
         "error": cell.error, "reason": cell.cannot or cause},
        fix=f"A dense task needs outputs that move with the input: {fix}.", lesson=1)


def _invariance_finding(worst: dict[str, Any], first: tuple[str, _Probe, _Cell] | None,
                        modules: dict[str, Op], severity: Severity) -> Finding:
    cause = _cause(modules.get(first[0]), first[2], first[1])[0] if first is not None else "unknown"
    top1 = worst["top-1 change rate"]
    changed = f"; top-1 changes on {top1:.0%} of the batch" if top1 is not None else ""
    return Finding(
        "invariance.broken", severity,
        f"The output is not invariant to {worst['transform']} (relative change {worst['invariance error']:.3g}"
        f"{changed}).",
        {"transform": worst["transform"], "invariance_error": worst["invariance error"], "top1_change_rate": top1,
         "first_break_layer": first[0] if first is not None else None, "first_break_cause": cause},
        fix="Classification needs invariance: end the convolutions with global average pooling, blur before "
            "sub-sampling (Zhang 2019), or train with shift/flip augmentation.", lesson=1)
