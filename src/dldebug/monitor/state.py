"""A TrainingMonitor's state as plain values, for checkpoints (``torch.load(weights_only=True)``, JSON)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from dldebug.errors import InputError

if TYPE_CHECKING:
    from dldebug.monitor.monitor import TrainingMonitor

__all__ = ["STATE_VERSION", "load_monitor_state", "monitor_state"]

#: Version 2 keeps the learning rate beside each loss; version-1 states load with the lr unknown.
STATE_VERSION = 2


def monitor_state(monitor: TrainingMonitor) -> dict[str, Any]:
    """Everything a resumed run needs to continue the monitor's history (ints, floats, strings, lists, dicts)."""
    return {
        "version": STATE_VERSION, "next_step": monitor.next_step, "steps_observed": monitor.steps_observed,
        "losses": monitor.losses.state_dict(), "logits": monitor.logits.state_dict(),
        "nonfinite": monitor.nonfinite, "fault": monitor.fault, "failure": monitor.failure,
        "last_finite": None if monitor.last_finite is None else list(monitor.last_finite),
        "batch": dict(monitor.batch), "batch_findings": list(monitor.batch_findings),
        "errors": dict(monitor.errors), "judged_at": monitor._judged_at,
    }


def load_monitor_state(monitor: TrainingMonitor, state: Any) -> None:
    """Restore :func:`monitor_state`'s output into ``monitor``.

    Raises:
        InputError: ``state`` is not a TrainingMonitor state (version 1 or 2).
    """
    version = state.get("version") if isinstance(state, dict) else None
    if version not in (1, STATE_VERSION):
        got = version if isinstance(state, dict) else type(state).__name__
        raise InputError(f"not a TrainingMonitor state (version {STATE_VERSION}); got version {got!r}. "
                         "Pass what TrainingMonitor.state_dict() returned.")
    losses = dict(state["losses"])
    if version == 1:  # no learning rate was kept then
        losses["fields"] = ["loss", "lr"]
        losses["rows"] = [[*row, math.nan] for row in losses["rows"]]
    monitor.next_step, monitor.steps_observed = int(state["next_step"]), int(state["steps_observed"])
    monitor.losses.load_state_dict(losses)
    monitor.logits.load_state_dict(state["logits"])
    monitor.nonfinite, monitor.fault = state["nonfinite"], state["fault"]
    monitor.failure = state.get("failure")
    last = state["last_finite"]
    monitor.last_finite = None if last is None else (int(last[0]), float(last[1]))
    monitor.batch = dict(state["batch"])
    monitor.batch_findings = list(state["batch_findings"])
    monitor.errors = dict(state["errors"])
    monitor._judged_at = int(state["judged_at"])
