"""What a log itself says beyond its curves: damage, re-logged steps, the learning rate, NaNs a logger hid.

Pure functions from a :class:`~dldebug.curves.records.CurveLog` to arrays and findings;
:func:`dldebug.curves.diagnose_log` puts them together.
"""

from __future__ import annotations

import numpy as np

from dldebug.curves.records import Curve, CurveLog
from dldebug.findings import Finding, Severity

__all__ = ["damage_finding", "hidden_nonfinite", "lr_at_steps", "mark_hidden_nonfinite", "overlap_finding"]


def lr_at_steps(lr: Curve, steps: np.ndarray) -> np.ndarray:
    """The learning rate in force at each of ``steps``: the last one logged at or before it (NaN before any).

    Example:
        >>> lr = Curve("lr", np.array([0, 10]), np.array([0.1, 0.0]))
        >>> lr_at_steps(lr, np.array([0, 5, 10, 20])).tolist()
        [0.1, 0.1, 0.0, 0.0]
    """
    at = np.searchsorted(lr.steps, steps, side="right") - 1
    values = lr.values[np.clip(at, 0, len(lr.values) - 1)] if len(lr.values) else np.full(len(steps), np.nan)
    return np.where(at >= 0, values, np.nan)


def hidden_nonfinite(log: CurveLog, curve: Curve) -> np.ndarray | None:
    """Where Hugging Face's NaN filter logged 0.0 for a loss that was NaN/Inf (a boolean mask), or None.

    With ``logging_nan_inf_filter=True`` (the default) the Trainer leaves NaN/Inf losses out of the
    logged average, so once every step is NaN the log reads ``loss: 0.0`` while ``grad_norm`` (logged
    in the same entry) is NaN. Those entries are the non-finite ones.
    """
    grad = log.curves.get("grad_norm")
    if log.format != "hf_trainer_state" or curve.name != "loss" or grad is None:
        return None
    bad_grad = grad.steps[~np.isfinite(grad.values)]
    mask = np.isin(curve.steps, bad_grad) & (curve.values == 0.0)
    return mask if mask.any() else None


def mark_hidden_nonfinite(finding: Finding, hidden: np.ndarray, curve: Curve) -> Finding:
    """``loss.nonfinite`` rewritten to say that the logger's NaN filter hid the NaN/Inf losses."""
    first = curve.steps[int(np.argmax(hidden))].item()
    message = (f"{finding.message} Hugging Face's NaN filter (logging_nan_inf_filter=True, the default) hid it: "
               f"from step {first} the log reads loss 0.0 while grad_norm is NaN/Inf in the same entries "
               f"({int(hidden.sum())} entries), so those losses are counted as non-finite.")
    evidence = {**finding.evidence, "hidden_by_nan_filter": int(hidden.sum()), "first_hidden_step": first}
    return Finding(finding.check, finding.severity, message, evidence,
                   fix=(finding.fix or "") + " Set logging_nan_inf_filter=False in TrainingArguments to log the "
                   "NaN itself.", lesson=finding.lesson)


def overlap_finding(curve: Curve) -> Finding | None:
    """``log.overlapping_steps`` (info) when the log held some of the curve's steps more than once."""
    overlap = curve.overlap
    if overlap is None:
        return None
    return Finding(
        "log.overlapping_steps", Severity.INFO,
        f"{overlap.count} step(s) of {curve.name} were logged more than once (steps {overlap.first_step} to "
        f"{overlap.last_step}), as a run resumed from a checkpoint logs its steps again; the later values "
        "(in the order the log was written) were used.",
        {"metric": curve.name, "overlapping_steps": overlap.count, "start_step": overlap.first_step,
         "end_step": overlap.last_step},
        fix="Nothing to do if the run was resumed; otherwise check that two runs do not write to one log.",
    )


def damage_finding(log: CurveLog, name: str, points: int, last_step: float | None) -> Finding:
    """``log.truncated``: where a damaged log read with ``partial=True`` stopped."""
    assert log.damage is not None
    return Finding(
        "log.truncated", Severity.WARNING,
        f"The log is damaged at {log.damage.describe()}; reading stopped there and the {points} {name} "
        f"points read before it (up to step {last_step}) were analysed.",
        {"path": str(log.damage.path), "line": log.damage.line if log.damage.line is not None else "unknown",
         "reason": log.damage.reason, "points_read": points,
         "last_step": last_step if last_step is not None else "none"},
        fix="Check whether the run crashed or the disk filled up while writing the log; re-export the log "
            "if the run still exists.",
    )
