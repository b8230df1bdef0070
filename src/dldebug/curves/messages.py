"""Turn curve detections into findings: the one-line message, the fix and the lesson."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dldebug.curves.blowup import NOT_RECOVERED_FACTOR
from dldebug.curves.detectors import Detection
from dldebug.findings import Finding, Severity

__all__ = ["build_finding", "nonfinite_finding", "plateau_severity", "too_short_finding"]

_STUCK_FIX = (
    "First check the learning rate (not 0; try values 10x apart) and that the weights train at all "
    "(parameters in the optimiser, requires_grad=True, no frozen layer). Then run the over-fit-one-batch test "
    "(dldebug.can_overfit): if the network cannot even memorise one small batch it may be too big for the "
    "data (lesson 3) - shrink the dominant layer (e.g. a 1x1 convolution before the fully connected layer; "
    "see dldebug.parameter_audit)."
)


def nonfinite_finding(raw: np.ndarray, steps: np.ndarray, first: int, name: str, mode: str,
                      min_points: int = 8) -> Finding:
    """``loss.nonfinite``: the first step with NaN/Inf, and how many points are non-finite."""
    bad = ~np.isfinite(raw)
    value = float(raw[first])
    kind = "NaN" if np.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    judged = (f"only the {first} points before it were judged" if first >= min_points else
              f"the {first} point(s) before it are too few to judge the curve's shape")
    return Finding(
        "loss.nonfinite", Severity.ERROR,
        f"{name} became {kind} at step {steps[first].item()} ({int(bad.sum())} of {len(raw)} points are "
        f"non-finite); {judged}.",
        {"metric": name, "mode": mode, "first_step": steps[first].item(), "start_step": steps[first].item(),
         "end_step": steps[-1].item(), "first_value": kind, "nonfinite_count": int(bad.sum()),
         "nan_count": int(np.isnan(raw).sum()), "points": len(raw),
         "last_finite_value": float(raw[first - 1]) if first else "none"},
        fix="Lower the learning rate or clip gradients (torch.nn.utils.clip_grad_norm_); look for log(0), "
            "division by zero or NaN inputs; dldebug.TrainingMonitor names the first module whose output or "
            "gradient went non-finite.",
    )


def build_finding(detection: Detection, evidence: dict[str, Any], name: str, mode: str) -> Finding:
    """The finding for one detection, its evidence already in the caller's steps and units."""
    return _BUILDERS[detection.check](evidence, name, mode)


def _g(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _diverging(e: dict[str, Any], name: str, mode: str) -> Finding:
    direction = "rose" if mode == "min" else "fell"
    return Finding(
        "loss.diverging", Severity.ERROR,
        f"{name} is diverging: from step {e['start_step']} its trend {direction} to {_g(e['final_level'])}, "
        f"far from the best level {_g(e['best_level'])} reached at step {e['best_step']}, and stayed there "
        f"to step {e['end_step']}.",
        e,
        fix="Lower the learning rate (3-10x) or add warm-up and gradient clipping; if the batch size grew, "
            "scale the learning rate with it (lesson 11); check that the loss and targets match.",
    )


#: A steady improvement this significant (t of the slope) is slow progress, not a stuck run.
STEADY_TREND_T = 3.0
#: Fewer points than this cannot tell a stuck run from one that converged before its first logged point.
STUCK_MIN_POINTS = 50


def stuck_severity(e: dict[str, Any]) -> Severity:
    """Error for a long flat run (or one at lr 0); info where the curve itself says it may be healthy.

    Info when the metric improves steadily though slowly (the slope's t statistic beyond
    ``STEADY_TREND_T``: a short run at a small learning rate), or when it has fewer than
    ``STUCK_MIN_POINTS`` points (epoch-level logs: a run that converged before its first point looks
    the same). A learning rate of 0 throughout is an error whatever the curve.
    """
    return Severity.INFO if _stuck_reason(e) in ("steady", "few_points") else Severity.ERROR


def _stuck_reason(e: dict[str, Any]) -> str:
    """Why the curve looks stuck, as far as the curve and the lr tell: the first that applies."""
    if e.get("lr_zero"):
        return "lr_zero"
    if float(e.get("trend_t", 0.0)) <= -STEADY_TREND_T:
        return "steady"
    if int(e.get("points", STUCK_MIN_POINTS)) < STUCK_MIN_POINTS:
        return "few_points"
    return "flat"


def _stuck(e: dict[str, Any], name: str, mode: str) -> Finding:
    change = "fall" if mode == "min" else "rise"
    reason, severity = _stuck_reason(e), stuck_severity(e)
    verdict = "is stuck" if severity is Severity.ERROR else "may only look stuck"
    head = (f"{name} {verdict}: no meaningful {change} from its starting level {_g(e['start_level'])} between steps "
            f"{e['start_step']} and {e['end_step']} (it ended at {_g(e['end_level'])}; the noise called for a "
            f"{change} of at least {_g(e['threshold'])}).")
    tails = {
        "lr_zero": " The learning rate was 0 throughout: nothing can train.",
        "steady": (f" It does {change} steadily, though slowly (slope t = {abs(float(e.get('trend_t', 0.0))):.1f}): "
                   "more steps, or a larger learning rate, not a bug so far; an early plateau (lesson 2) looks like "
                   "this."),
        "few_points": (f" With {e.get('points')} points (epoch-level logging?) a run that "
                       f"{'fell' if mode == 'min' else 'rose'} before its first logged point looks the same: log "
                       "every few steps from step 0 to tell."),
        "flat": (" An early plateau (lesson 2) may still break: if the model over-fits one small batch, keep "
                 "training or start from pretrained low-level features; if it cannot, it is truly stuck."),
    }
    return Finding("loss.stuck", severity, head + tails[reason], e, fix=_STUCK_FIX, lesson=3)


_PLATEAU_FIX = ("Nothing is broken. To shorten the plateau, start from pretrained low-level features, check the "
                "initialisation, or use a learning-rate warm-up.")


def plateau_severity(e: dict[str, Any]) -> Severity:
    """Warning when the learning rate was ~0 on the plateau or it took a long share of a long run, else info.

    A run of fewer than 50 points is too short for its shares to mean much (the first steps of a run
    can sit at chance for half of it): there a plateau is a warning only when the lr was ~0.
    """
    from dldebug.curves.plateaus import LONG_PLATEAU_SHARE, LONG_RUN_POINTS

    long = float(e["fraction_of_run"]) >= LONG_PLATEAU_SHARE and int(e.get("run_points", 0)) >= LONG_RUN_POINTS
    return Severity.WARNING if e.get("lr_cause") == "zero" or long else Severity.INFO


def _plateau(e: dict[str, Any], name: str, mode: str) -> Finding:
    change, changed = ("fell", "fallen") if mode == "min" else ("rose", "risen")
    share = round(100 * float(e["fraction_of_run"]))
    severity = plateau_severity(e)
    early = bool(e.get("early"))
    where = (f"sat on a plateau at {_g(e['level_before'])} from step {e['start_step']} to step {e['end_step']} "
             f"({share}% of the run)")
    if early:
        message = f"{name} {where}, then {change} to {_g(e['level_after'])}: an early plateau that broke (lesson 2)"
    else:
        message = f"{name} {where} after it had already {changed}, then {change} again to {_g(e['level_after'])}"
    message += _lr_clause(e) + _plateau_verdict(e, severity, early)
    others = f" Other flat stretches: steps {e['other_plateaus']}." if e.get("other_plateaus") else ""
    return Finding("loss.plateau", severity, message + others, e, fix=_plateau_fix(e, severity, early),
                   lesson=2 if early else None)


def _lr_clause(e: dict[str, Any]) -> str:
    cause = e.get("lr_cause")
    if cause == "zero":
        return (f"; the learning rate was ~0 there ({_g(e['lr_during'])}, against {_g(e['lr_max'])} at most), "
                "which explains the flat stretch")
    if cause == "warmup":
        return "; the learning rate was still warming up then"
    if cause == "raised":
        return f"; it fell once the learning rate was raised from {_g(e['lr_during'])} to {_g(e['lr_after'])}"
    return ""


def _plateau_verdict(e: dict[str, Any], severity: Severity, early: bool) -> str:
    if e.get("lr_cause") == "zero":
        return f": {round(100 * float(e['fraction_of_run']))}% of the run was lost to it."
    if severity is Severity.WARNING:
        return ": a long share of the run was lost to it."
    return ", not a bug." if early else "."


def _plateau_fix(e: dict[str, Any], severity: Severity, early: bool) -> str:
    if e.get("lr_cause") == "zero":
        return ("Check the learning-rate schedule: a scheduler that restarted or returns to 0, a warm-up or "
                "cyclic schedule starting again from 0, or a learning rate set to 0 by mistake wasted these steps.")
    if early and severity is Severity.INFO:
        return _PLATEAU_FIX
    if early:
        return ("The plateau cost a long share of the run (lesson 2): start from pretrained low-level features, "
                "check the initialisation (too small weights start flat), or warm the learning rate up.")
    return ("A flat stretch in mid-run is a saddle or a learning rate too low for that phase: try a larger learning "
            "rate or a schedule with restarts, check the initialisation (deep linear nets sit on saddles), and "
            "log the learning rate next to the loss to see what changed at the break.")


def _oscillating(e: dict[str, Any], name: str, mode: str) -> Finding:
    return Finding(
        "loss.oscillating", Severity.WARNING,
        f"{name} oscillates without a trend: {e['swings']} swings of about {_g(e['swing'])} (period about "
        f"{_g(e['period_steps'])} steps) between steps {e['start_step']} and {e['end_step']}.",
        e,
        fix="Lower the learning rate (or raise the batch size), add learning-rate decay, lower the momentum, "
            "and check that the data are shuffled every epoch.",
    )


def _collapsed(e: dict[str, Any], name: str, mode: str) -> Finding:
    start, median = float(e["start_level"]), float(e["median_level"])
    orders = float(np.log10(start / median)) if median > 0 else float("inf")
    e = {**e, "orders_of_magnitude": orders}
    return Finding(
        "loss.collapsed", Severity.WARNING,
        f"{name} collapsed toward zero: from step {e['start_step']} its median {_g(median)} sits "
        f"{orders:.1f} orders of magnitude below its start {_g(start)}, with {e['spikes']} recurring spikes "
        f"(up to {_g(e['max_spike'])}; first at step {e['first_spike_step']}).",
        e,
        fix="The model is over-confident (lesson 6): look for one exploding logit (dldebug.TrainingMonitor "
            "with logits=...), add label smoothing, weight decay or dropout, bound attention or scaling "
            "factors, and watch a validation set for over-fitting.",
        lesson=6,
    )


def _blowup(e: dict[str, Any], name: str, mode: str) -> Finding:
    recovered = bool(e["recovered"])
    message = (f"{name} blew up at step {e['jump_step']}: from its starting level {_g(e['start_level'])} it jumped "
               f"to {_g(e['jump_level'])} (x{e['jump_factor']:.3g}) and peaked at {_g(e['peak_level'])} at step "
               f"{e['peak_step']}")
    if e.get("swings"):
        message += f", then oscillated ({e['swings']} swings)"
    if recovered:
        message += (f"; it stayed above 3x its start until step {e['end_step']} "
                    f"({round(100 * float(e['high_share']))}% of the run) before it came back.")
    elif float(e["settled_factor"]) < NOT_RECOVERED_FACTOR:
        message += (f", and came back only to {_g(e['settled_level'])}, {e['settled_factor']:.3g}x where it began, "
                    "by the end of the run: after the blow-up it never trained below its start.")
    else:
        message += (f", and settled at {_g(e['settled_level'])}, {e['settled_factor']:.3g}x where it began, "
                    "by the end of the run: it never recovered.")
    return Finding(
        "loss.blowup", Severity.WARNING if recovered else Severity.ERROR, message, e,
        fix="The learning rate is far too high for the first steps (lessons 2 and 11): lower it 10x or more, warm "
            "it up from a small value (dldebug.lr.warmup), clip gradients (torch.nn.utils.clip_grad_norm_), and if "
            "the batch size was raised, scale the learning rate with it (dldebug.lr.scale_lr). A run that blew up "
            "early carries damaged weights even when its loss comes back: restart it rather than continue.",
        lesson=11,
    )


def too_short_finding(points: int, min_points: int, name: str, mode: str) -> Finding:
    """``curve.too_short``: the curve has too few finite points to be judged (nothing was judged)."""
    return Finding(
        "curve.too_short", Severity.INFO,
        f"{name} has only {points} point(s): at least {min_points} are needed to judge its shape, so it was not "
        "judged (no finding does not mean healthy).",
        {"metric": name, "mode": mode, "points": points, "min_points": min_points},
        fix="Log the metric more often (every step or every few steps), or judge it again after more steps.",
    )


_BUILDERS: dict[str, Callable[[dict[str, Any], str, str], Finding]] = {
    "loss.diverging": _diverging,
    "loss.stuck": _stuck,
    "loss.plateau": _plateau,
    "loss.oscillating": _oscillating,
    "loss.collapsed": _collapsed,
    "loss.blowup": _blowup,
}
