"""Turn curve detections into findings: the one-line message, the fix and the lesson."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dldebug.curves.detectors import Detection
from dldebug.findings import Finding, Severity

__all__ = ["build_finding", "nonfinite_finding"]

_STUCK_FIX = (
    "First check the learning rate (not 0; try values 10x apart) and that the weights train at all "
    "(parameters in the optimiser, requires_grad=True, no frozen layer). Then run the over-fit-one-batch test "
    "(dldebug.can_overfit): if the network cannot even memorise one small batch it may be too big for the "
    "data (lesson 3) - shrink the dominant layer (e.g. a 1x1 convolution before the fully connected layer; "
    "see dldebug.parameter_audit)."
)


def nonfinite_finding(raw: np.ndarray, steps: np.ndarray, first: int, name: str, mode: str) -> Finding:
    """``loss.nonfinite``: the first step with NaN/Inf, and how many points are non-finite."""
    bad = ~np.isfinite(raw)
    value = float(raw[first])
    kind = "NaN" if np.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    return Finding(
        "loss.nonfinite", Severity.ERROR,
        f"{name} became {kind} at step {steps[first].item()} ({int(bad.sum())} of {len(raw)} points are "
        f"non-finite); only the {first} points before it were judged.",
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


def _stuck(e: dict[str, Any], name: str, mode: str) -> Finding:
    change = "fall" if mode == "min" else "rise"
    return Finding(
        "loss.stuck", Severity.ERROR,
        f"{name} is stuck: no meaningful {change} from its starting level {_g(e['start_level'])} between steps "
        f"{e['start_step']} and {e['end_step']} (it ended at {_g(e['end_level'])}; the noise called for a "
        f"{change} of at least {_g(e['threshold'])}). An early plateau (lesson 2) may still break: if the model "
        "over-fits one small batch, keep training or start from pretrained low-level features; if it cannot, "
        "it is truly stuck.",
        e, fix=_STUCK_FIX, lesson=3,
    )


def _plateau(e: dict[str, Any], name: str, mode: str) -> Finding:
    change = "fell" if mode == "min" else "rose"
    share = round(100 * float(e["fraction_of_run"]))
    return Finding(
        "loss.plateau", Severity.INFO,
        f"{name} sat on a plateau at {_g(e['level_before'])} from step {e['start_step']} to step "
        f"{e['end_step']} ({share}% of the run), then {change} to {_g(e['level_after'])}: an early plateau "
        "that broke, not a bug (lesson 2).",
        e,
        fix="Nothing is broken. To shorten the plateau, start from pretrained low-level features, check the "
            "initialisation, or use a learning-rate warm-up.",
        lesson=2,
    )


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


_BUILDERS: dict[str, Callable[[dict[str, Any], str, str], Finding]] = {
    "loss.diverging": _diverging,
    "loss.stuck": _stuck,
    "loss.plateau": _plateau,
    "loss.oscillating": _oscillating,
    "loss.collapsed": _collapsed,
}
