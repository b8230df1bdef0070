"""Equivariance and invariance, layer by layer, under translations, flips and rotations (lesson 1).

A transform ``T`` of the input is mapped to each layer's resolution (``T'``,
:mod:`dldebug.checks.geometry`): feature maps, and the token grids of patch models (ViT). Shifts are
circular (``torch.roll``), so a net with circular padding and no striding is equivariant to float
precision; zero padding shows up as an error at the border. The cause of the first break is named
by :mod:`dldebug.checks.equivariance_causes`, checked against oracles (circular padding, zeroed
position embeddings) where the obvious guess could be wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any, Literal

import torch
from torch import fx, nn

from dldebug.arguments import real, received
from dldebug.checks.equivariance_causes import Cause, SeenInput, explain, zero_padded
from dldebug.checks.geometry import Cell, Probe, SpatialInput, expected_output, layout, norm, relative_error
from dldebug.checks.layers import Op, eval_mode, layer_kind, run_watched, traced
from dldebug.errors import InputError
from dldebug.findings import Finding, Report, Severity, Table
from dldebug.model_io import OutputSpec, select_output

__all__ = ["probe_equivariance"]

Transform = Literal["translate", "hflip", "rot90"]
Task = Literal["dense", "classification"]
_TRANSFORMS = ("translate", "hflip", "rot90")
_OUTPUT = "(output)"
_TOOL = "probe_equivariance"


@dataclass
class _Pass:
    """How the model is run: its graph (or None: hooks), the spatial input and the output spec."""

    model: nn.Module
    graph: fx.GraphModule | None
    spatial: SpatialInput
    output: OutputSpec
    passes: list[int] = field(default_factory=lambda: [0])  # forward passes so far (shared with oracle runs)

    def run(self, x: torch.Tensor, callback: Any) -> torch.Tensor:
        self.passes[0] += 1
        raw = run_watched(self.model, self.graph, self.spatial.with_x(x), callback)
        return select_output(raw, self.output, tool=_TOOL).detach()


@dataclass
class _Baseline:
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    modules: dict[str, Op] = field(default_factory=dict)
    flat_inputs: set[str] = field(default_factory=set)  # layers whose input had no spatial axes left
    # per probe label, (layer key, input) of its first zero-padded convolution over the tolerance (the
    # circular-padding oracle's input)
    padded_inputs: dict[str, tuple[str, torch.Tensor]] = field(default_factory=dict)


def probe_equivariance(
    model: nn.Module,
    x: Any,
    *,
    transforms: tuple[Transform, ...] = ("translate", "hflip", "rot90"),
    shifts: tuple[int, ...] = (1, 2, 4),
    task: Task = "dense",
    tolerance: float = 1e-3,
    output: OutputSpec = None,
) -> Report:
    """Measure how far each layer is from equivariant, and the output from invariant.

    Costs one forward pass for ``x`` plus one per (transform, shift): ``translate`` uses every
    shift, ``hflip`` and ``rot90`` one pass each. Naming a break at a zero-padded convolution costs
    no pass as a rule (that layer alone is re-run with circular padding; two passes where a
    functional op before it broke the property); checking position embeddings costs two (the model
    with them zeroed). The model runs in eval mode, without gradients; its mode is restored afterwards.

    Args:
        model: a PyTorch module taking ``x``.
        x: a batch ``(N, C, H, W)`` (or ``(N, C, L)`` for sequences; ``rot90`` then skipped), or the
            model's inputs as a tuple (positional) or a dict (keyword, e.g. ``{"pixel_values": x}``):
            the first floating tensor with spatial axes is transformed (``report.meta["input"]``).
        transforms: any of ``"translate"`` (circular shift of every spatial axis), ``"hflip"``
            (flip of the last axis) and ``"rot90"`` (rotation of the last two axes, square maps).
        shifts: translation sizes in input pixels (ViT: multiples of the patch size probe past the
            patch embedding).
        task: ``"dense"`` needs equivariance (``equivariance.broken``); ``"classification"``
            needs invariance of the output (``invariance.broken``).
        tolerance: the relative error above which a layer counts as broken.
        output: which tensor of a structured output is the model's output (default ``logits``,
            else ``last_hidden_state``, else the first tensor).

    Returns:
        A Report with tables ``equivariance.layers`` (one row per layer) and
        ``equivariance.output`` (invariance error and top-1 change rate per probe).

    Raises:
        InputError: no floating batch with spatial axes among the inputs, or an argument is invalid.

    Example:
        >>> net = nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular")
        >>> report = probe_equivariance(net, torch.randn(2, 1, 8, 8), transforms=("translate",))
        >>> report.has("equivariance.broken")
        False
    """
    spatial = SpatialInput.find(x, tool=_TOOL)
    probes, skipped = _validate(spatial.x, transforms, shifts, task, tolerance)
    with eval_mode(model), torch.no_grad():
        run = _Pass(model, None if isinstance(spatial.inputs, Mapping) else traced(model), spatial, output)
        base, base_out = _baseline(run)
        cells: dict[str, dict[str, Cell]] = {key: {} for key in base.outputs}
        cells[_OUTPUT] = {}
        output_rows = []
        scales: dict[str, float] = {}  # ||f(x)|| per layer, filled on first use
        for probe in probes:
            out = _probed_pass(run, probe, base, cells, scales, tolerance)
            expected = expected_output(base_out, spatial.x, probe)
            cells[_OUTPUT][probe.label] = expected if isinstance(expected, Cell) else Cell(
                relative_error(out, expected), collapsed=layout(base_out, spatial.x).collapsed)
            output_rows.append(_output_row(probe, out, base_out))
        findings = _findings(run, probes, cells, base, output_rows, task, tolerance)
    shapes = {key: tuple(t.shape) for key, t in base.outputs.items()} | {_OUTPUT: tuple(base_out.shape)}
    layers = _layer_table(probes, cells, base.modules, shapes, tolerance)
    table = Table.from_records("equivariance.output", output_rows,
                               caption="At the output: invariance error ||f(Tx) - f(x)|| / ||f(x)|| and the "
                                       "share of the batch whose top-1 class changes.")
    return Report(findings, title=f"Equivariance probe ({task})", tables=(layers, table),
                  meta={"task": task, "tolerance": tolerance, "forward_passes": run.passes[0],
                        "probes": ", ".join(p.label for p in probes), "skipped": ", ".join(skipped),
                        "traced": "torch.fx" if run.graph is not None else "forward hooks", "input": spatial.name})


def _validate(x: torch.Tensor, transforms: Any, shifts: Any, task: str,
              tolerance: Any) -> tuple[list[Probe], list[str]]:
    if isinstance(transforms, str):
        transforms = (transforms,)  # transforms="translate" means the one transform
    if isinstance(shifts, Integral) and not isinstance(shifts, bool):
        shifts = (shifts,)  # shifts=2 means the one shift
    if not isinstance(transforms, (tuple, list)) or not transforms or not all(isinstance(t, str) for t in transforms):
        raise InputError(f"transforms must be a tuple of {list(_TRANSFORMS)}; got {received(transforms)}.")
    unknown = [t for t in transforms if t not in _TRANSFORMS]
    if unknown:
        raise InputError(f"Unknown transform(s) {unknown}; choose from {list(_TRANSFORMS)}.")
    if task not in ("dense", "classification"):
        raise InputError(f"task must be 'dense' or 'classification'; got {task!r}.")
    if not isinstance(shifts, (tuple, list)) or not shifts or any(
            not isinstance(s, Integral) or isinstance(s, bool) or s <= 0 for s in shifts):
        raise InputError(f"shifts must be positive whole pixel counts such as (1, 2, 4); got {received(shifts)}.")
    shifts = tuple(int(s) for s in shifts)
    real(tolerance, "tolerance must be a finite number > 0", low=0.0, error=InputError)
    probes: list[Probe] = []
    skipped: list[str] = []
    for transform in dict.fromkeys(transforms):
        if transform == "translate":
            probes.extend(Probe("translate", s) for s in dict.fromkeys(shifts))
        elif transform == "rot90" and (x.dim() < 4 or x.shape[-1] != x.shape[-2]):
            skipped.append("rot90 (needs a square 2-D input)")
        else:
            probes.append(Probe(transform))
    return probes, skipped


def _baseline(run: _Pass) -> tuple[_Baseline, torch.Tensor]:
    base = _Baseline()
    x = run.spatial.x

    def record(key: str, _name: str, module: Op, inputs: tuple[Any, ...], output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            base.outputs[key] = output.detach().clone()  # clone: a later in-place op must not change it
            base.modules[key] = module
            first = inputs[0] if inputs else None
            if isinstance(first, torch.Tensor) and layout(first, x).kind == "flat":
                base.flat_inputs.add(key)

    return base, run.run(x, record).clone()


def _probed_pass(run: _Pass, probe: Probe, base: _Baseline, cells: dict[str, dict[str, Cell]],
                 scales: dict[str, float], tolerance: float) -> torch.Tensor:
    x = run.spatial.x

    def compare(key: str, _name: str, module: Op, inputs: tuple[Any, ...], output: Any) -> None:
        reference = base.outputs.get(key)
        if reference is None or not isinstance(output, torch.Tensor) or output.shape != reference.shape:
            return
        if _is_padding(module):  # the next layer crops back to the grid; compare there
            cells[key][probe.label] = Cell(None, skipped="padded map")
            return
        expected = expected_output(reference, x, probe)
        if isinstance(expected, Cell):
            cells[key][probe.label] = expected
            return
        if key not in scales:
            scales[key] = norm(reference)
        error = relative_error(output, expected, scale=scales[key], scratch=expected is not reference)
        cells[key][probe.label] = Cell(error, collapsed=layout(reference, x).collapsed)
        first = inputs[0] if inputs else None
        if (error > tolerance and isinstance(first, torch.Tensor) and zero_padded(module)
                and probe.label not in base.padded_inputs):
            base.padded_inputs[probe.label] = key, first.detach().clone()

    transformed = expected_output(x, x, probe)
    assert isinstance(transformed, torch.Tensor)  # the input always maps onto itself
    return run.run(transformed, compare)


def _is_padding(module: Op) -> bool:
    name = module if isinstance(module, str) else type(module).__name__
    return "pad" in name.lower()


def _measure_layer(run: _Pass, key: str) -> Any:
    """A Measure for the oracles: the error of layer ``key`` under a probe, on a variant of the model."""
    def measure(variant: nn.Module, probe: Probe) -> float | None:
        graph = traced(variant) if run.graph is not None else None
        sub = _Pass(variant, graph, run.spatial, run.output, run.passes)
        captured: dict[str, torch.Tensor] = {}

        def grab(k: str, _name: str, _module: Op, _inputs: tuple[Any, ...], out: Any) -> None:
            if k == key and isinstance(out, torch.Tensor):
                captured["y"] = out.detach().clone()

        base_out = sub.run(run.spatial.x, grab)
        reference = base_out if key == _OUTPUT else captured.pop("y", None)
        transformed = expected_output(run.spatial.x, run.spatial.x, probe)
        assert isinstance(transformed, torch.Tensor)
        moved_out = sub.run(transformed, grab)
        moved = moved_out if key == _OUTPUT else captured.get("y")
        expected = None if reference is None else expected_output(reference, run.spatial.x, probe)
        if moved is None or not isinstance(expected, torch.Tensor):
            return None
        return relative_error(moved, expected)

    return measure


def _output_row(probe: Probe, out: torch.Tensor, base_out: torch.Tensor) -> dict[str, Any]:
    top1 = None
    if out.dim() == 2 and out.shape[1] > 1:
        top1 = float((out.argmax(1) != base_out.argmax(1)).float().mean())
    return {"transform": probe.label, "invariance error": relative_error(out, base_out),
            "top-1 change rate": top1}


def _layer_table(probes: list[Probe], cells: dict[str, dict[str, Cell]], modules: dict[str, Op],
                 shapes: dict[str, tuple[int, ...]], tolerance: float) -> Table:
    labels = [p.label for p in probes]
    rows = []
    for key, by_probe in cells.items():
        broken = [label for label in labels if label in by_probe and by_probe[label].broken(tolerance, "dense")]
        kind = layer_kind(modules[key]) if key in modules else "model output"
        rows.append((key, kind, "x".join(map(str, shapes[key][1:])),
                     *(by_probe[label].text() if label in by_probe else "not reached" for label in labels),
                     "broken: " + ", ".join(broken) if broken else "ok"))
    return Table("equivariance.layers", ("layer", "type", "shape", *labels, "verdict"), tuple(rows),
                 caption=f"Relative equivariance error ||f(Tx) - T'f(x)|| / ||f(x)|| per layer (tolerance "
                         f"{tolerance:g}). Shifts are circular and mapped to each layer's resolution (token grids "
                         f"of patch models included; a class token must stay put); 'cannot (1/2 px)' means the "
                         f"layer cannot be shift-equivariant. Layers without spatial axes show their invariance "
                         f"error ||f(Tx) - f(x)|| / ||f(x)||.")


def _first_break(probes: list[Probe], cells: dict[str, dict[str, Cell]], task: str,
                 tolerance: float) -> tuple[str, Probe, Cell] | None:
    """The first layer (in call order) broken by any of ``probes``, with the probe and its cell."""
    for key, by_probe in cells.items():
        for probe in probes:
            cell = by_probe.get(probe.label)
            if cell is not None and cell.broken(tolerance, task):
                return key, probe, cell
    return None


def _explain(run: _Pass, first: tuple[str, Probe, Cell], base: _Baseline, tolerance: float) -> Cause:
    key, probe, cell = first
    name = "" if key == _OUTPUT else key.partition("#")[0]
    module = base.modules.get(key)
    if run.graph is not None and isinstance(module, nn.Module):
        name = _graph_module_name(run, module) or name
    return explain(run.model, name, module, cell, probe, tolerance=tolerance, measure=_measure_layer(run, key),
                   input_flat=key in base.flat_inputs, seen=_seen(run, base, key, probe))


def _seen(run: _Pass, base: _Baseline, key: str, probe: Probe) -> SeenInput | None:
    padded, reference = base.padded_inputs.get(probe.label), base.outputs.get(key)
    if padded is None or padded[0] != key or reference is None:
        return None
    return SeenInput(padded[1], reference, run.spatial.x)


def _graph_module_name(run: _Pass, module: nn.Module) -> str | None:
    return next((n for n, m in run.model.named_modules() if m is module), None)


def _findings(run: _Pass, probes: list[Probe], cells: dict[str, dict[str, Cell]], base: _Baseline,
              output_rows: list[dict[str, Any]], task: str, tolerance: float) -> list[Finding]:
    findings = []
    for transform in dict.fromkeys(p.transform for p in probes):
        family = [p for p in probes if p.transform == transform]
        severity = Severity.WARNING if transform == "translate" else Severity.INFO
        first = _first_break(family, cells, task, tolerance)
        cause = _explain(run, first, base, tolerance) if first is not None else None
        if task == "dense" and first is not None and cause is not None:
            findings.append(_equivariance_finding(first, cause, base.modules, severity, run.model))
        rows = [r for r in output_rows if r["transform"] in {p.label for p in family}]
        worst = max(rows, key=lambda r: r["invariance error"])
        if task == "classification" and worst["invariance error"] > tolerance:
            findings.append(_invariance_finding(worst, first, cause, severity))
    return findings


def _equivariance_finding(first: tuple[str, Probe, Cell], cause: Cause, modules: dict[str, Op],
                          severity: Severity, model: nn.Module) -> Finding:
    key, probe, cell = first
    kind = layer_kind(modules[key]) if key in modules else "model output"
    measured = f"error {cell.error:.3g}" if cell.error is not None else \
        f"{probe.shift} px at the input is {cell.cannot} here: it cannot be shift-equivariant"
    layer, where = key, ""
    if cause.at is not None:  # the row commutes with the transform: blame the module whose forward() broke it
        layer, kind = cause.at, type(model.get_submodule(cause.at)).__name__
        where = f"; first seen at {key!r}, which commutes with the transform"
    return Finding(
        "equivariance.broken", severity,
        f"Layer {layer!r} ({kind}) is the first to break {probe.transform} equivariance ({probe.label}: {measured}"
        f"{where}): {cause.text}.",
        {"layer": layer, "type": kind, "seen_at": key, "transform": probe.transform,
         "shift": probe.shift if probe.transform == "translate" else None,
         "error": cell.error, "reason": cell.cannot or cause.text, **cause.evidence},
        fix=f"A dense task needs outputs that move with the input: {cause.fix}.", lesson=1)


def _invariance_finding(worst: dict[str, Any], first: tuple[str, Probe, Cell] | None, cause: Cause | None,
                        severity: Severity) -> Finding:
    top1 = worst["top-1 change rate"]
    changed = f"; top-1 changes on {top1:.0%} of the batch" if top1 is not None else ""
    return Finding(
        "invariance.broken", severity,
        f"The output is not invariant to {worst['transform']} (relative change {worst['invariance error']:.3g}"
        f"{changed}).",
        {"transform": worst["transform"], "invariance_error": worst["invariance error"], "top1_change_rate": top1,
         "first_break_layer": (cause.at or first[0]) if first is not None and cause is not None else None,
         "first_break_cause": cause.text if cause is not None else "unknown"},
        fix="Classification needs invariance: end the convolutions with global average pooling, blur before "
            "sub-sampling (Zhang 2019), or train with shift/flip augmentation.", lesson=1)
