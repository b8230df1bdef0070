"""TrainingMonitor: watch a training run online at a cost the loop does not notice.

Per step the monitor stores the loss (and learning rate) in a bounded, decimated history, keeps
references to the modules' latest outputs (no computation) and, every ``every`` steps, reduces
logits and per-layer norms with fused kernels. A non-finite loss triggers an exact search for
the first module whose output, gradient or parameters went non-finite, using the outputs of
that very step. On accelerators the loss is kept on the device and read every ``every`` steps,
so the monitor adds no per-step host synchronisation.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from torch import nn

from dldebug.errors import ConfigError, InputError, TrainingCheckError
from dldebug.findings import Finding, Report, Severity
from dldebug.model_io import OutputSpec, describe, output_items, read_loss, select_output
from dldebug.monitor.distributed import rank_and_world
from dldebug.monitor.history import DecimatedHistory
from dldebug.monitor.probes import LayerNorms, ModuleProbe
from dldebug.monitor.reporting import build_report, minimal_report, nonfinite_findings
from dldebug.monitor.signals import LOGIT_FIELDS, logit_statistics, track_batch
from dldebug.monitor.state import load_monitor_state, monitor_state
from dldebug.monitor.summary import log_summary, write_report

__all__ = ["TrainingMonitor"]

_MAX_BATCH_FINDINGS = 16
_JUDGE_BUDGET = 200  # re-judge the curve only after 200x the last judgement's time: <= 0.5% of the run
_INSTANCES = itertools.count()  # the same on every rank when every rank builds its monitors in the same order
_LOGGER = logging.getLogger("dldebug.monitor")


class TrainingMonitor:
    """Online diagnosis of a training run: non-finite values, curve shape, logits, batch size.

    Args:
        model: the model to probe for the first non-finite module (optional). Nothing is
            installed on it: pickling, copying, ``state_dict()`` and ``.to()`` work as without
            the monitor.
        every: the sampling period in steps: logits and per-layer norms are measured,
            and device-side values read, every ``every`` steps; the loss curve is
            re-judged every ``50 * every`` steps at most, and no sooner than 200 times
            the last judgement's duration (so judging costs at most ~0.5% of the run).
        strict: raise :class:`~dldebug.errors.TrainingCheckError` from ``observe`` when
            an error-severity finding appears (and let internal failures through).
        base_batch_size: the batch size the learning rate was tuned for (lesson 11).
        base_lr: the learning rate tuned at ``base_batch_size`` (default: the first lr observed).
        layer_stats: measure per-layer output and gradient norms on every step, so a
            non-finite gradient is caught at its own step (costs more; logit statistics
            stay on the ``every`` schedule).
        capacity: the most points each history keeps (memory stays bounded).
        defer_sync: keep losses on the device and read them every ``every`` steps;
            None chooses it for non-CPU tensors.
        output: which tensor of a structured ``logits=`` value (ModelOutput, dict, tuple) holds
            the logits: a key/attribute, an index or a callable (see ``dldebug.model_io.select_output``).
        report_dir: where :meth:`finish` writes ``report.html`` and ``report.json`` (rank 0 only).
        gather_timeout: under torch.distributed, the most seconds rank 0 waits for the other
            ranks' findings at report time.
        logger: the logger of the end-of-run summary (default ``dldebug.monitor``).

    Raises:
        ConfigError: an invalid ``every``, ``capacity``, ``base_batch_size`` or ``gather_timeout``.

    Example:
        >>> monitor = TrainingMonitor(every=10)
        >>> for step in range(200):
        ...     monitor.observe(2.0 / (1 + step) + 0.01)
        >>> monitor.report().filter(min_severity="warning")
        ()
    """

    def __init__(self, model: nn.Module | None = None, *, every: int = 20, strict: bool = False,
                 base_batch_size: int | None = None, base_lr: float | None = None, layer_stats: bool = False,
                 capacity: int = 2048, defer_sync: bool | None = None, output: OutputSpec = None,
                 report_dir: str | Path | None = None, gather_timeout: float = 60.0,
                 logger: logging.Logger | None = None) -> None:
        _validate(model, every, capacity, base_batch_size, gather_timeout)
        self.every, self.strict, self.layer_stats = every, strict, layer_stats
        self.base_batch_size, self.base_lr, self.defer_sync = base_batch_size, base_lr, defer_sync
        self.output, self.report_dir, self.gather_timeout = output, report_dir, float(gather_timeout)
        self.logger = logger or _LOGGER
        self.probe = ModuleProbe(model, on_error=self._hook_error) if model is not None else None
        self.losses = DecimatedHistory(("loss", "lr"), capacity=capacity)
        self.logits = DecimatedHistory(LOGIT_FIELDS, capacity=capacity // 2)
        self.layers: LayerNorms | None = None
        self.next_step = 0
        self.steps_observed = 0
        self.nonfinite: dict[str, Any] | None = None  # the first non-finite loss: step, value
        self.fault: dict[str, Any] | None = None  # where the first non-finite value appeared in the model
        self.failure: dict[str, Any] | None = None  # the exception that ended the run, if one did
        self.last_finite: tuple[int, float] | None = None
        self.batch: dict[str, Any] = {}
        self.batch_findings: list[dict[str, Any]] = []
        self.errors: dict[str, Any] = {"count": 0, "first": "", "where": ""}
        self.curve_findings: tuple[Finding, ...] = ()
        self.finished: Report | None = None
        self.replaced_steps = 0  # history rows replaced by a resumed run that observed their steps again
        self._instance = next(_INSTANCES)
        self._reports = 0
        self._judged_at = 0
        self._judge_clock, self._judge_cost = 0.0, 0.0
        self._raised: set[str] = set()
        self._pending: list[tuple[int, torch.Tensor, torch.Tensor | None, float]] = []

    # -- the per-step entry point ------------------------------------------------------------------------
    def observe(self, loss: Any, *, logits: Any = None, targets: torch.Tensor | None = None,
                batch_size: int | None = None, lr: float | None = None, step: int | None = None) -> None:
        """Record one training step; call it after the optimiser step.

        Args:
            loss: the step's loss: a float, a tensor (a non-scalar one is averaged), or the model's
                structured output (``ModelOutput``/dict/tuple holding ``loss``; its ``logits`` are
                then used too unless ``logits`` is given).
            logits: the step's output logits ``(..., classes)`` for the over-confidence check, or a
                structured output holding them (see ``output=``).
            targets: class-index targets matching ``logits`` (for the training accuracy).
            batch_size: the step's batch size (lesson 11).
            lr: the step's learning rate (lesson 11; it also explains plateaus of the loss).
            step: the global step (default: one more than the last).

        Raises:
            TrainingCheckError: only with ``strict=True``, when an error finding appears.
        """
        try:
            self._observe(loss, logits, targets, batch_size, lr, step)
        except TrainingCheckError:
            raise
        except Exception as exc:
            if self.strict:
                raise
            self.record_error("observe", exc)
        finally:
            if self.probe is not None:
                self.probe.clear()  # never keep a step's outputs past its observe, whatever happened

    def _unpack(self, loss: Any, logits: Any) -> tuple[float | torch.Tensor, torch.Tensor | None]:
        """The loss and logits tensors from whatever the caller passed (through ``dldebug.model_io``)."""
        if not isinstance(loss, (torch.Tensor, int, float)):
            structured = loss
            try:
                loss = read_loss(structured, tool="TrainingMonitor.observe")
            except InputError:
                raise InputError("TrainingMonitor.observe: loss must be a number, a tensor or the model's output "
                                 "holding 'loss' (a ModelOutput, dict or tuple); "
                                 f"got {describe(structured)}.") from None
            if logits is None and (self.output is not None or "logits" in dict(output_items(structured) or ())):
                logits = structured
        if logits is not None and not isinstance(logits, torch.Tensor):
            logits = select_output(logits, self.output, tool="TrainingMonitor.observe")
        return loss, logits

    def _observe(self, given_loss: Any, given_logits: Any, targets: torch.Tensor | None,
                 batch_size: int | None, lr: float | None, step: int | None) -> None:
        step = self.next_step if step is None else int(step)
        self.next_step = step + 1  # counted even if the values turn out unreadable: steps stay the loop's
        self.steps_observed += 1
        loss, logits = self._unpack(given_loss, given_logits)
        rate = math.nan if lr is None else float(lr)
        sampled = self.steps_observed % self.every == 1 % self.every
        stats = self._logit_statistics(logits, targets) if logits is not None and sampled else None
        if not isinstance(loss, torch.Tensor):
            self._record(step, float(loss), None if stats is None else stats.tolist(), rate, live=True)
        elif self._defers(loss):
            self._pending.append((step, loss.detach().float().mean(), stats, rate))
            if len(self._pending) >= self.every:
                self._flush()
        else:
            value = loss.item() if loss.numel() == 1 else float(loss.detach().float().mean())
            self._record(step, value, None if stats is None else stats.tolist(), rate, live=True)
        if batch_size is not None:
            self._track_batch(step, int(batch_size), None if lr is None else float(lr))
        if self.probe is not None and (sampled or self.layer_stats):
            self._snapshot_layers(step)
        if step - self._judged_at >= 50 * self.every and (
                time.perf_counter() - self._judge_clock >= _JUDGE_BUDGET * self._judge_cost):
            self._judge_curve(step)

    def _logit_statistics(self, logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor | None:
        # Optional evidence: a failure here must not cost the step's loss value.
        try:
            return logit_statistics(logits, targets)
        except Exception as exc:
            if self.strict:
                raise
            self.record_error("logit statistics", exc)
            return None

    def _defers(self, loss: torch.Tensor) -> bool:
        return loss.device.type != "cpu" if self.defer_sync is None else self.defer_sync

    def _record(self, step: int, value: float, stats: list[float] | None, lr: float, *, live: bool) -> None:
        if self.losses.steps and step <= self.losses.steps[-1]:  # resumed from an earlier step: later wins
            self.replaced_steps += self.losses.truncate_from(step)
            self.logits.truncate_from(step)
        self.losses.append(step, (value, lr))
        if stats is not None:
            self.logits.append(step, (value, *stats))
        if math.isfinite(value):
            self.last_finite = (step, value)
        elif self.nonfinite is None:
            last_step, last_value = self.last_finite or (-1, math.nan)
            self.nonfinite = {"step": step, "value": value, "last_finite_step": last_step,
                              "last_finite_loss": last_value}
            if self.fault is None and self.probe is not None:
                # The kept outputs belong to the current step; a deferred step older than that is
                # searched in its aftermath (non-finite parameters show where the damage went).
                self.fault = {"step": self.next_step - 1, "kind": "loss", "exact": live, **self.probe.forensics()}
            self._raise_if_strict(nonfinite_findings(self))

    def _flush(self) -> None:
        """Read the deferred device-side losses in one transfer."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        values = torch.stack([v for _, v, _, _ in pending]).tolist()
        current = self.next_step - 1
        for (step, _, stats, lr), value in zip(pending, values, strict=True):
            self._record(step, value, None if stats is None else stats.tolist(), lr, live=step == current)

    def _snapshot_layers(self, step: int) -> None:
        assert self.probe is not None
        snapshot = self.probe.snapshot(step)
        self.layers = snapshot
        bad_grads = [name for name, g in zip(snapshot.modules, snapshot.grad_norms, strict=True)
                     if g is not None and not math.isfinite(g)]
        if bad_grads and self.fault is None:
            bad_params = [n for n, ok in zip(snapshot.modules, snapshot.param_finite, strict=True) if not ok]
            self.fault = {"step": step, "kind": "gradient", "exact": True, "grad_module": bad_grads[-1],
                          "output_module": None, "output_position": -1, "nonfinite_params": bad_params,
                          "modules_run": len(snapshot.modules)}
            self._raise_if_strict(nonfinite_findings(self))

    def snapshot_gradients(self, step: int | None = None) -> None:
        """Measure per-layer norms now, while the gradients exist (e.g. before a framework zeroes them).

        The Hugging Face callback calls it from ``on_optimizer_step``; ``observe`` then keeps it.
        """
        if self.probe is None:
            return
        try:
            self._snapshot_layers(self.next_step if step is None else int(step))
        except TrainingCheckError:
            raise
        except Exception as exc:
            if self.strict:
                raise
            self.record_error("gradient snapshot", exc)

    def _track_batch(self, step: int, size: int, lr: float | None) -> None:
        finding = track_batch(self.batch, step, size, lr, self.base_batch_size, self.base_lr)
        if finding is not None and len(self.batch_findings) < _MAX_BATCH_FINDINGS:
            self.batch_findings.append(finding.to_dict())

    def _judge_curve(self, step: int) -> None:
        self._judged_at = step
        start = time.perf_counter()
        try:
            from dldebug.curves import diagnose_curve

            lr = self.losses.column("lr")
            report = diagnose_curve(self.losses.column("loss"), self.losses.steps, name="loss", mode="min",
                                    lr=lr if any(math.isfinite(v) for v in lr) else None)
            self.curve_findings = report.findings
            self._judge_clock = time.perf_counter()
            self._judge_cost = self._judge_clock - start
        except Exception as exc:
            if self.strict:
                raise
            self.record_error("diagnose_curve", exc)
            return
        self._raise_if_strict(self.curve_findings)

    def _raise_if_strict(self, findings: tuple[Finding, ...] | list[Finding]) -> None:
        if not self.strict:
            return
        for finding in findings:
            if finding.severity is Severity.ERROR and finding.check not in self._raised:
                self._raised.add(finding.check)
                raise TrainingCheckError(f"{finding.check}: {finding.message}")

    def _hook_error(self, where: str, exc: Exception) -> None:
        if self.strict:
            raise exc
        self.record_error(where, exc)

    def record_error(self, where: str, exc: BaseException) -> None:
        """Count an internal failure (``monitor.internal_error``); the first one is kept with where it happened."""
        if self.errors["count"] == 0:
            self.errors.update(first=f"{type(exc).__name__}: {exc}", where=where)
        self.errors["count"] += 1

    # -- results ----------------------------------------------------------------------------------------
    def report(self) -> Report:
        """Judge everything observed so far and return the findings, the curves and per-layer norms.

        Under ``torch.distributed`` (more than one process) rank 0's report merges every rank's
        findings and names the rank of each; rank 0 waits at most ``gather_timeout`` seconds for
        the others (every rank should call ``report``/``finish`` the same number of times).
        """
        try:
            self._flush()
            self._judge_curve(self.next_step)
        except TrainingCheckError:
            raise
        except Exception as exc:
            if self.strict:
                raise
            self.record_error("report", exc)
        self._reports += 1
        key = f"dldebug/monitor/{self._instance}/{self._reports}"
        try:
            return build_report(self, key=key)
        except Exception as exc:  # one broken piece of evidence must not cost the whole report
            if self.strict:
                raise
            self.record_error("report", exc)
            return minimal_report(self, key=key)

    def fail(self, exc: BaseException, step: int | None = None) -> None:
        """Record that the run stopped with ``exc`` (``monitor.run_failed``); the callbacks call it."""
        if self.failure is None:
            self.failure = {"step": self.next_step if step is None else int(step), "error": type(exc).__name__,
                            "message": str(exc)[:500], "failed_at": time.time()}

    def finish(self, report_dir: str | Path | None = None) -> Report:
        """End the run: judge it, log a short summary and write the report (rank 0), remove the hooks.

        Args:
            report_dir: where to write ``report.html`` and ``report.json`` (default: the
                constructor's ``report_dir``; None writes nothing).

        Returns:
            The report (on rank 0 the one merged over all ranks). Calling ``finish`` again returns it again.
        """
        if self.finished is not None:
            return self.finished
        report = self.report()
        self.close()
        self.finished = report
        if rank_and_world()[0] != 0:
            return report
        folder = report_dir if report_dir is not None else self.report_dir
        written = None
        try:
            written = write_report(report, folder) if folder is not None else None
        except Exception as exc:  # a full disk must not turn a finished run into a crash
            if self.strict:
                raise
            self.logger.warning("dldebug: could not write the report to %s: %s", folder, exc)
        log_summary(self.logger, report, self.steps_observed, written)
        return report

    def close(self) -> None:
        """Stop watching the model (the monitor keeps its history)."""
        if self.probe is not None:
            self.probe.remove()

    def __enter__(self) -> TrainingMonitor:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        """Leaving a ``with`` block finishes the run; an exception is recorded (and not swallowed)."""
        if exc is not None:
            self.fail(exc)
        try:
            self.finish()
        except Exception:
            if exc is None:
                raise  # a failure of our own (strict=True); never mask the user's exception

    # -- checkpointing ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The monitor's state as plain values (loads with ``torch.load(weights_only=True)``)."""
        self._flush()
        return monitor_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state saved by :meth:`state_dict` (after a checkpoint/resume).

        Raises:
            InputError: the state is not a TrainingMonitor state.
        """
        load_monitor_state(self, state)

    def __repr__(self) -> str:
        return (f"TrainingMonitor(every={self.every}, strict={self.strict}, layer_stats={self.layer_stats}, "
                f"steps_observed={self.steps_observed})")


def _validate(model: nn.Module | None, every: int, capacity: int, base_batch_size: int | None,
              gather_timeout: float) -> None:
    if not isinstance(every, int) or every < 1:
        raise ConfigError(f"every must be a positive number of steps; got {every!r}.")
    if not isinstance(capacity, int) or capacity < 64 or capacity % 2:
        raise ConfigError(f"capacity must be an even number of points >= 64; got {capacity!r}.")
    if base_batch_size is not None and (not isinstance(base_batch_size, int) or base_batch_size < 1):
        raise ConfigError(f"base_batch_size must be a positive int or None; got {base_batch_size!r}.")
    if not isinstance(gather_timeout, (int, float)) or not gather_timeout >= 0:
        raise ConfigError(f"gather_timeout must be a number of seconds >= 0; got {gather_timeout!r}.")
    if model is not None and not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module or None; got {type(model).__name__}.")
