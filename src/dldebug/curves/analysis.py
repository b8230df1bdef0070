"""``diagnose_curve``: classify a loss or metric curve and say when each phenomenon began and ended."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np

from dldebug.curves import detectors as det
from dldebug.curves.blowup import Blowup, detect_blowup
from dldebug.curves.messages import build_finding, nonfinite_finding, too_short_finding
from dldebug.curves.plateaus import detect_plateaus, explain_with_lr
from dldebug.curves.signal import BinnedCurve, bin_curve
from dldebug.errors import ConfigError, InputError
from dldebug.findings import Figure, Finding, Report, Series, Span, Table

__all__ = ["FIGURE_POINTS", "MIN_POINTS", "diagnose_curve"]

#: Curves with fewer finite points (before the first non-finite one) are not judged.
MIN_POINTS = 8
_MODES = ("min", "max")
#: At most this many points per plotted series.
FIGURE_POINTS = 500


def diagnose_curve(
    values: Any,
    steps: Any = None,
    *,
    name: str = "loss",
    mode: Literal["min", "max"] = "min",
    lr: Any = None,
) -> Report:
    """Classify a loss (or metric) curve: non-finite, early blow-up, diverging, stuck, plateau, oscillating, collapsed.

    The analysis is robust to noise and scale: levels are running medians,
    noise is the median absolute deviation of point-to-point differences, and
    every threshold is a multiple of that noise or a fraction of the curve's own
    level. Curves longer than 2,000 points are summarised into bins of equal
    size for the segment logic; non-finite points and spikes are found exactly.
    Only the points before the first non-finite value are judged.

    Args:
        values: 1-D sequence of numbers (list, numpy array, CPU tensor); NaN/Inf allowed.
        steps: the step of each value (same length, finite, non-decreasing);
            ``None`` means ``0, 1, 2, ...``. Evidence is given in these units.
        name: the metric's name, used in messages and evidence.
        mode: ``"min"`` when lower is better (a loss), ``"max"`` when higher is
            better (accuracy): the logic mirrors (an early blow-up is judged in ``"min"`` mode only).
        lr: the learning rate at each value (same length; NaN where unknown), or None.
            It explains plateaus: an lr of ~0 on a flat stretch, a schedule's decay at its break.

    Returns:
        A Report with at most one finding per phenomenon (check ids ``loss.*``; ``curve.too_short``
        when fewer than :data:`MIN_POINTS` finite points could be judged), a figure ``"curve"``
        (raw and smoothed series, segments as spans) and, when anything was found, a table
        ``"curve segments"``. ``meta["judged"]`` says whether the shape was judged.

    Raises:
        InputError: ``values``/``steps``/``lr`` are not 1-D real numbers, or lengths differ.
        ConfigError: ``mode`` is not ``"min"`` or ``"max"``.

    Example:
        >>> import numpy as np
        >>> flat = 2.3 + 0.01 * np.random.default_rng(0).standard_normal(500)
        >>> [f.check for f in diagnose_curve(flat).findings]
        ['loss.stuck']
        >>> falling = 2.3 * np.exp(-np.arange(500) / 80) + 0.05
        >>> diagnose_curve(falling).findings
        ()
    """
    if mode not in _MODES:
        raise ConfigError(f"mode must be one of {list(_MODES)} ('min': lower is better, e.g. a loss; "
                          f"'max': higher is better, e.g. accuracy); got {mode!r}.")
    if not isinstance(name, str):
        raise InputError(f"name must be a string such as 'loss'; got {type(name).__name__}.")
    raw = _as_1d(values, "values").astype(np.float64)
    step_array = np.arange(len(raw)) if steps is None else _as_steps(steps, len(raw))
    lr_array = None if lr is None else _as_lr(lr, len(raw))
    with np.errstate(all="ignore"):
        return _diagnose(raw, step_array, name, mode, lr_array)


def _diagnose(raw: np.ndarray, steps: np.ndarray, name: str, mode: str, lr: np.ndarray | None) -> Report:
    findings: list[Finding] = []
    finite = np.isfinite(raw)
    prefix = len(raw)
    if not finite.all():
        prefix = int(np.argmin(finite))
        findings.append(nonfinite_finding(raw, steps, prefix, name, mode, MIN_POINTS))
    elif prefix < MIN_POINTS:
        findings.append(too_short_finding(prefix, MIN_POINTS, name, mode))
    values = raw[:prefix]
    sign = 1.0 if mode == "min" else -1.0
    scale = float(np.max(np.abs(values))) if prefix else 1.0
    scale = scale if scale > 0 else 1.0
    normalised = sign * values / scale
    binned = bin_curve(normalised, steps[:prefix])
    detections: list[det.Detection] = []
    shape, blowup = None, None
    if prefix >= MIN_POINTS:
        lr_bins = None if lr is None else bin_curve(lr[:prefix], steps[:prefix]).values
        shape, detections, blowup = _detect(binned, normalised, values, mode, scale, lr_bins)
    context = _Context(name, mode, sign, scale, binned, steps[:prefix])
    findings.extend(build_finding(d, context.to_evidence(d), name, mode) for d in detections)
    return Report(
        findings, title=f"Curve diagnosis: {name}",
        figures=[_figure(context, shape, findings, raw, steps)],
        tables=[_segments_table(findings)] if findings else [],
        meta=_meta(context, raw, prefix, shape, blowup),
    )


def _detect(binned: BinnedCurve, normalised: np.ndarray, values: np.ndarray, mode: str, scale: float,
            lr: np.ndarray | None) -> tuple[det.CurveShape, list[det.Detection], Blowup | None]:
    oscillation = det.detect_oscillation(binned.values)
    period = None if oscillation is None else float(oscillation.numbers["period_bins"])
    shape = det.describe(binned.values, period)
    blowup = (detect_blowup(values, binned, scale=scale, oscillating=oscillation is not None) if mode == "min"
              else None)
    if blowup is not None:  # what follows an early blow-up is its aftermath: one phenomenon, one finding
        return shape, [_blowup_detection(blowup, binned, scale, oscillation)], blowup
    found: list[det.Detection] = []
    diverging = det.detect_diverging(shape)
    collapse = det.detect_collapse(shape, normalised, binned.first_index) if mode == "min" else None
    for detection in (diverging, collapse):
        if detection is not None:
            found.append(detection)
    if oscillation is not None and collapse is None:
        found.append(oscillation)  # a collapsed loss oscillates near zero: one phenomenon, one finding
    if diverging is None and oscillation is None and collapse is None:
        stuck = det.detect_stuck(shape)
        if stuck is not None:
            if lr is not None and len(lr) == shape.size and np.isfinite(lr).all() and float(np.max(np.abs(lr))) <= 0.0:
                stuck = dataclasses.replace(stuck, notes={**stuck.notes, "lr_zero": "yes"})
            found.append(stuck)
    if not any(d.check == "loss.stuck" for d in found):
        plateau = _plateau(shape, lr)
        if plateau is not None:
            found.append(plateau)
    return shape, found, None


def _plateau(shape: det.CurveShape, lr: np.ndarray | None) -> det.Detection | None:
    """The plateau to report: the longest one that the lr schedule (a warm-up, a decay at its break) does not explain.

    A stretch where the lr was ~0 is reported first: that schedule is almost certainly a mistake.
    """
    kept = []
    for plateau in detect_plateaus(shape):
        notes = explain_with_lr(plateau, lr) if lr is not None else {}
        if notes.get("lr_cause") in ("decay", "warmup"):  # the schedule made it (a warm-up, an lr drop): expected
            continue
        if "zero_lr_first_bin" in notes:  # the lr says exactly where the stretch was: report those steps
            first, last = int(notes.pop("zero_lr_first_bin")), int(notes.pop("zero_lr_last_bin"))
            plateau = dataclasses.replace(plateau, start=first, end=last, numbers={
                **plateau.numbers, "fraction_of_run": (last + 1 - first) / shape.size})
        kept.append(dataclasses.replace(plateau, notes=notes))
    if not kept:
        return None
    chosen = max(kept, key=lambda d: (d.notes.get("lr_cause") == "zero", d.end - d.start))
    others = [d for d in kept if d is not chosen]
    if not others:
        return chosen
    return dataclasses.replace(chosen, numbers={**chosen.numbers, "plateaus": len(kept)},
                               other_bins=tuple((d.start, d.end) for d in others))


def _blowup_detection(blowup: Blowup, binned: BinnedCurve, scale: float,
                      oscillation: det.Detection | None) -> det.Detection:
    size = binned.bin_size
    numbers: dict[str, float | int] = {
        "jump_factor": blowup.jump_level / blowup.start_level, "peak_factor": blowup.peak_level / blowup.start_level,
        "settled_factor": blowup.settled_level / blowup.start_level, "high_share": blowup.high_share,
        "recovered": int(blowup.recovered), "baseline_points": blowup.baseline_points}
    if oscillation is not None:
        numbers["swings"] = oscillation.numbers["swings"]
    return det.Detection(
        "loss.blowup", blowup.jump_index // size, blowup.recovered_index // size,
        levels={"start_level": blowup.start_level / scale, "jump_level": blowup.jump_level / scale,
                "peak_level": blowup.peak_level / scale, "settled_level": blowup.settled_level / scale},
        numbers=numbers, raw_marks={"jump_step": blowup.jump_index, "peak_step": blowup.peak_index})


class _Context:
    """Converts a detection's bins and normalised levels into the caller's steps and units."""

    def __init__(self, name: str, mode: str, sign: float, scale: float, binned: BinnedCurve,
                 steps: np.ndarray) -> None:
        self.name, self.mode, self.sign, self.scale = name, mode, sign, scale
        self.binned, self.steps = binned, steps

    def level(self, value: float) -> float:
        return float(self.sign * value * self.scale)

    def magnitude(self, value: float) -> float:
        return float(abs(value) * self.scale)

    def step_span(self) -> float:
        centers = self.binned.center_step
        return float((centers[-1] - centers[0]) / max(len(centers) - 1, 1)) if len(centers) else 1.0

    def to_evidence(self, d: det.Detection) -> dict[str, Any]:
        evidence: dict[str, Any] = {"metric": self.name, "mode": self.mode,
                                    "start_step": self.binned.first_step[d.start].item(),
                                    "end_step": self.binned.last_step[d.end].item()}
        for key, bin_index in d.marks.items():
            evidence[key] = self.binned.center_step[bin_index].item() if self.binned.bin_size > 1 \
                else self.binned.first_step[bin_index].item()
        for key, raw_index in d.raw_marks.items():
            evidence[key] = self.steps[raw_index].item()
        for key, value in d.levels.items():
            evidence[key] = self.level(value) if "level" in key else self.magnitude(value)
        for key, number in d.numbers.items():
            if key == "period_bins":
                evidence["period_steps"] = float(number) * self.step_span()
            else:
                evidence[key] = number
        evidence.update(d.notes)
        if d.other_bins:
            evidence["other_plateaus"] = ", ".join(
                f"{self.binned.first_step[a].item()}-{self.binned.last_step[b].item()}" for a, b in d.other_bins)
        return evidence


def _figure(context: _Context, shape: det.CurveShape | None, findings: list[Finding], raw: np.ndarray,
            steps: np.ndarray) -> Figure:
    binned = context.binned
    x = binned.first_step if binned.bin_size == 1 else binned.center_step
    label = context.name if binned.bin_size == 1 else f"{context.name} (median of {binned.bin_size}-point bins)"
    # Every plotted point is converted to a plain float one by one: plot a thinned series (the
    # analysis itself used all bins).
    stride = max(1, -(-len(x) // FIGURE_POINTS))
    x = x[::stride]
    series = [Series(label, tuple(x.tolist()),
                     tuple((context.sign * binned.values[::stride] * context.scale).tolist()))]
    if shape is not None:
        series.append(Series(f"{context.name} (smoothed)", tuple(x.tolist()),
                             tuple((context.sign * shape.trend[::stride] * context.scale).tolist())))
    spans = [Span(f.evidence["start_step"], f.evidence["end_step"], f.check, f.severity)
             for f in findings if "start_step" in f.evidence and "end_step" in f.evidence]
    markers = [(f.evidence["first_step"], f.check) for f in findings if f.check == "loss.nonfinite"]
    finite = raw[np.isfinite(raw)]
    logy = bool(context.mode == "min" and len(finite) and finite.min() > 0 and finite.max() / finite.min() > 100)
    return Figure("curve", title=f"{context.name} curve", series=tuple(series), spans=tuple(spans),
                  markers=tuple(markers), xlabel="step", ylabel=context.name, logy=logy,
                  caption="Shaded: detected segments, coloured by severity.")


def _segments_table(findings: list[Finding]) -> Table:
    rows = [(f.check, f.severity.value, f.evidence.get("start_step"), f.evidence.get("end_step"))
            for f in findings]
    return Table("curve segments", ("check", "severity", "start_step", "end_step"), tuple(rows),
                 caption="Step range of each detected phenomenon.")


def _meta(context: _Context, raw: np.ndarray, prefix: int, shape: det.CurveShape | None,
          blowup: Blowup | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"metric": context.name, "mode": context.mode, "points": len(raw),
                            "judged_points": prefix, "bin_size": context.binned.bin_size,
                            "judged": shape is not None, "min_points": MIN_POINTS}
    if shape is not None:
        meta.update(start_level=context.level(shape.start_level), end_level=context.level(shape.end_level),
                    noise_sigma=context.magnitude(shape.sigma))
    if blowup is not None:  # the level before the jump, not a median that holds the jump
        meta["start_level"] = blowup.start_level
    return meta


def _as_1d(values: Any, what: str) -> np.ndarray:
    if values is None or isinstance(values, (str, bytes, dict)):
        raise InputError(f"{what} must be a 1-D sequence of numbers; got {type(values).__name__}.")
    if hasattr(values, "detach") and hasattr(values, "cpu"):  # a torch tensor, without importing torch
        values = values.detach().cpu()
        if getattr(values, "is_floating_point", lambda: False)() and values.dtype.itemsize < 4:
            values = values.float()  # numpy has no bfloat16: half-precision losses are widened first
        values = values.numpy()
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be a 1-D sequence of numbers; could not read it as an array "
                         f"({exc}).") from None
    if array.dtype.kind not in "biuf":
        raise InputError(f"{what} must be real numbers; got an array of dtype {array.dtype} "
                         f"(first item: {array.flat[0]!r})." if array.size else
                         f"{what} must be real numbers; got an array of dtype {array.dtype}.")
    if array.ndim != 1:
        hint = " Flatten it with np.ravel(...) if it is one curve." if array.size == max(array.shape, default=0) \
            else ""
        raise InputError(f"{what} must be 1-D (one value per step); got shape {tuple(array.shape)}.{hint}")
    return array


def _as_lr(lr: Any, n: int) -> np.ndarray:
    array = _as_1d(lr, "lr").astype(np.float64)
    if len(array) != n:
        raise InputError(f"lr must have one learning rate per value (NaN where unknown); got {len(array)} "
                         f"for {n} values.")
    return array


def _as_steps(steps: Any, n: int) -> np.ndarray:
    array = _as_1d(steps, "steps")
    if len(array) != n:
        raise InputError(f"steps must have one entry per value; got {len(array)} steps for {n} values.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(np.argmin(np.isfinite(array)))
        raise InputError(f"steps must be finite; got {array[bad]} at position {bad}.")
    if n > 1 and np.any(np.diff(array.astype(np.float64)) < 0):
        bad = int(np.argmax(np.diff(array.astype(np.float64)) < 0)) + 1
        raise InputError(f"steps must be non-decreasing; got step {array[bad].item()} after "
                         f"{array[bad - 1].item()} at position {bad}. Sort the curve by step first.")
    return array.astype(np.int64) if array.dtype.kind in "bu" else array
