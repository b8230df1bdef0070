"""Turn a TrainingMonitor's state into findings, figures and tables (no side effects)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from dldebug.findings import Figure, Finding, Report, Series, Severity, Span, Table
from dldebug.monitor.distributed import gather_findings
from dldebug.monitor.signals import judge_overconfidence

if TYPE_CHECKING:
    from dldebug.monitor.monitor import TrainingMonitor

__all__ = ["build_report", "minimal_report", "nonfinite_findings"]

_FIXES = {
    "output": "This module's forward pass turned finite inputs into NaN/Inf: look for log/sqrt/division of "
              "values <= 0, exp overflow or a float16 range overflow there; normalise its inputs or compute "
              "it in float32. If its parameters were already non-finite, an earlier update blew up: "
              "TrainingMonitor(layer_stats=True) catches the bad gradient at its own step.",
    "gradient": "The gradient exploded or went NaN here: lower the learning rate, clip gradients "
                "(torch.nn.utils.clip_grad_norm_) and look for operations with unbounded derivatives "
                "(sqrt or log at 0).",
    "parameters": "These parameters were already non-finite: an earlier update blew up. Lower the learning "
                  "rate, clip gradients or warm up; TrainingMonitor(layer_stats=True) catches the bad "
                  "gradient at its own step.",
    "loss": "Every module output was finite, so the loss computation itself produced NaN/Inf: look for "
            "log(0), division by zero, targets out of range or, for CTC, a missing blank class.",
}


def _culprit(fault: dict[str, Any]) -> tuple[str, str]:
    """(module, where): the first place the non-finite value shows up, in causal order."""
    bad_params = list(fault.get("nonfinite_params") or [])
    output = fault.get("output_module")
    if output:
        return output, "output"
    if fault.get("grad_module"):
        return fault["grad_module"], "gradient"
    if bad_params:
        return bad_params[0], "parameters"
    return "<loss function>", "loss"


def nonfinite_findings(monitor: TrainingMonitor) -> list[Finding]:
    """``loss.nonfinite`` for the first NaN/Inf loss and ``monitor.nonfinite_module`` for its origin."""
    findings = []
    if monitor.nonfinite is not None:
        step, value = monitor.nonfinite["step"], monitor.nonfinite["value"]
        last_step, last_value = monitor.nonfinite["last_finite_step"], monitor.nonfinite["last_finite_loss"]
        before = f"last finite value {last_value:.4g} at step {last_step}" if last_step >= 0 else "from the start"
        findings.append(Finding(
            "loss.nonfinite", Severity.ERROR, f"the loss became {value} at step {step} ({before})",
            {"step": step, "value": value, "last_finite_step": last_step, "last_finite_loss": last_value},
            fix="Find where the NaN/Inf starts (see monitor.nonfinite_module), lower the learning rate, "
                "clip gradients, and check the data and the loss for invalid values.",
        ))
    fault = monitor.fault
    if fault is not None:
        module, where = _culprit(fault)
        probe = monitor.probe
        module_type = probe.types[probe.names.index(module)] if probe and module in probe.names else ""
        bad_params = list(fault.get("nonfinite_params") or [])
        findings.append(Finding(
            "monitor.nonfinite_module", Severity.ERROR,
            f"the first non-finite value at step {fault['step']} is in the {where} of '{module}'"
            + (f" ({module_type})" if module_type else ""),
            {"step": int(fault["step"]), "module": module, "module_type": module_type, "where": where,
             "output_module": fault.get("output_module") or "", "grad_module": fault.get("grad_module") or "",
             "nonfinite_params": ", ".join(bad_params[:10]) + (" ..." if len(bad_params) > 10 else ""),
             "modules_run": int(fault.get("modules_run", 0)), "exact_step": bool(fault.get("exact", True))},
            fix=_FIXES[where],
        ))
    return findings


def _failure(failure: dict[str, Any] | None) -> list[Finding]:
    if failure is None:
        return []
    return [Finding(
        "monitor.run_failed", Severity.ERROR,
        f"the run stopped at step {failure['step']} with {failure['error']}: {failure['message']}",
        {"step": int(failure["step"]), "error": str(failure["error"]), "error_message": str(failure["message"]),
         "failed_at": float(failure.get("failed_at", 0.0))},
        fix="Read the traceback of this process (under torch.distributed, of the rank named here: the other "
            "ranks usually fail afterwards, waiting for it).",
    )]


def _internal_error(errors: dict[str, Any]) -> list[Finding]:
    if not errors.get("count"):
        return []
    return [Finding(
        "monitor.internal_error", Severity.WARNING,
        f"the monitor failed {errors['count']} time(s) in {errors['where']} and skipped that work: "
        f"{errors['first']}",
        {"count": errors["count"], "where": errors["where"], "first_error": errors["first"]},
        fix="Training was not interrupted. Check the values passed to observe(); "
            "TrainingMonitor(strict=True) raises the error where it happens.",
    )]


def _probe_blind(monitor: TrainingMonitor) -> list[Finding]:
    """``monitor.probe_blind`` (info): the model was given but none of its modules ran under the monitor."""
    probe = monitor.probe
    if probe is None or probe.outputs_seen or monitor.steps_observed < 2 or not probe.names:
        return []
    return [Finding(
        "monitor.probe_blind", Severity.INFO,
        f"none of the model's {len(probe.names)} watched modules produced a training-mode output in "
        f"{monitor.steps_observed} steps, so a NaN could not be traced to a module",
        {"modules": len(probe.names), "steps": monitor.steps_observed},
        fix="Pass the module that actually runs the forward pass (e.g. the model inside a wrapper, before "
            "torch.jit.script), or leave model= out if only the loss curve matters.",
    )]


def _loss_figure(monitor: TrainingMonitor, findings: list[Finding]) -> Figure:
    spans, markers = [], []
    for f in findings:
        ev = f.evidence
        if isinstance(ev.get("start_step"), (int, float)) and isinstance(ev.get("end_step"), (int, float)):
            spans.append(Span(ev["start_step"], ev["end_step"], f.check, f.severity))
        elif isinstance(ev.get("step"), (int, float)):
            markers.append((ev["step"], f.check))
    values = monitor.losses.column("loss")
    positive = [v for v in values if math.isfinite(v)]
    return Figure(
        "monitor.loss", title="Training loss seen by the monitor",
        series=(Series("loss", monitor.losses.steps, values),), spans=tuple(spans), markers=tuple(markers),
        xlabel="step", ylabel="loss", logy=bool(positive) and min(positive) > 0,
        caption=f"{monitor.steps_observed:,} steps observed; one point kept every {monitor.losses.stride} step(s).",
    )


def _logit_figure(monitor: TrainingMonitor) -> Figure:
    steps = monitor.logits.steps
    return Figure(
        "monitor.logits", title="Logits: top value, runner-up and their gap (batch means)",
        series=tuple(Series(label, steps, monitor.logits.column(name)) for label, name in
                     (("top logit", "top_logit"), ("runner-up", "runner_up"), ("gap", "gap"))),
        xlabel="step", ylabel="logit",
    )


def _layer_table(monitor: TrainingMonitor) -> Table:
    layers = monitor.layers
    assert layers is not None and monitor.probe is not None
    rows = tuple(
        (name, kind, out, grad, ok) for name, kind, out, grad, ok in
        zip(layers.modules, monitor.probe.types, layers.output_norms, layers.grad_norms, layers.param_finite,
            strict=True))
    return Table("monitor.layers", ("module", "type", "output norm", "gradient norm", "parameters finite"), rows,
                 caption=f"Per-module L2 norms at step {layers.step} (empty: not run, or no gradient).")


def build_report(monitor: TrainingMonitor, *, key: str = "dldebug/monitor") -> Report:
    """The monitor's findings (merged over ranks under torch.distributed), curves and per-layer norms.

    ``key`` names this report in the process group's store (the same on every rank).
    """
    findings = nonfinite_findings(monitor)
    findings += [f for f in monitor.curve_findings
                 if not (f.check == "loss.nonfinite" and monitor.nonfinite is not None)]
    overconfident = judge_overconfidence(monitor.logits.steps, monitor.logits.rows)
    findings += [overconfident] if overconfident is not None else []
    findings += [Finding.from_dict(d) for d in monitor.batch_findings]
    findings += _internal_error(monitor.errors)
    findings += _failure(monitor.failure)
    findings += _probe_blind(monitor)
    findings, meta = gather_findings(findings, key=key, timeout=monitor.gather_timeout)
    figures = [_loss_figure(monitor, findings)] if len(monitor.losses) else []
    if len(monitor.logits):
        figures.append(_logit_figure(monitor))
    tables = [_layer_table(monitor)] if monitor.layers is not None else []
    meta.update(steps_observed=monitor.steps_observed, every=monitor.every, loss_stride=monitor.losses.stride)
    return Report(findings, title="Training monitor", figures=figures, tables=tables, meta=meta)


def minimal_report(monitor: TrainingMonitor, *, key: str = "dldebug/monitor") -> Report:
    """The findings that need no further computation, when :func:`build_report` failed (never raises)."""
    findings: list[Finding] = []
    for part in (lambda: nonfinite_findings(monitor), lambda: _failure(monitor.failure),
                 lambda: [Finding.from_dict(d) for d in monitor.batch_findings]):
        try:
            findings += part()
        except Exception:  # what cannot be shown is counted in monitor.internal_error below
            monitor.errors["count"] += 1
    findings += _internal_error(monitor.errors)
    try:
        findings, meta = gather_findings(findings, key=key, timeout=monitor.gather_timeout)
    except Exception:
        meta = {}
    meta.update(steps_observed=monitor.steps_observed, every=monitor.every, partial_report=True)
    return Report(findings, title="Training monitor", meta=meta)
