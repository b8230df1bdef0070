"""A Lightning ``Callback`` that feeds a :class:`TrainingMonitor` (needs the ``lightning`` extra).

Example::

    from dldebug.monitor.lightning import MonitorCallback
    callback = MonitorCallback(every=20, report_dir="dldebug-report")
    trainer = lightning.Trainer(callbacks=[callback])
    trainer.fit(module)
    print(callback.report)

``training_step`` may return a dict with ``"loss"`` plus ``"logits"`` and ``"targets"``
to enable the over-confidence check. The callback's state goes into Lightning
checkpoints, so a resumed run keeps its history.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dldebug.errors import require
from dldebug.findings import Report
from dldebug.monitor.monitor import TrainingMonitor

_pl = require("lightning.pytorch", extra="lightning", feature="dldebug.monitor.lightning.MonitorCallback",
              package="lightning")

__all__ = ["MonitorCallback", "batch_size_of"]

#: Lightning's own logger shows INFO by default; the summary goes through a child of it.
_LOGGER = logging.getLogger("lightning.pytorch.callbacks.dldebug")


def batch_size_of(batch: Any) -> int | None:
    """The leading dimension of the first tensor in a batch (tensor, tuple/list or dict), or None."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else None
    items = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else ()
    for item in items:
        size = batch_size_of(item)
        if size is not None:
            return size
    return None


class MonitorCallback(_pl.Callback):  # type: ignore[misc,name-defined]
    """Observe every training batch; ``report`` holds the monitor's report after ``fit``.

    At the end of ``fit`` (or when it fails) rank 0 logs a short summary through Lightning's
    logger and, with ``report_dir``, writes ``report.html`` and ``report.json`` there. Under DDP
    every rank runs its own monitor; rank 0's report names the rank of each finding.

    Args:
        probe_model: watch the LightningModule's layers to name the first non-finite module.
        report_dir: where rank 0 writes the report at the end of ``fit``.
        **monitor_kwargs: passed to :class:`TrainingMonitor` (``every``, ``strict``,
            ``base_batch_size``, ``base_lr``, ``layer_stats``, ``capacity``, ``gather_timeout``, ...).
    """

    def __init__(self, *, probe_model: bool = True, report_dir: str | Path | None = None,
                 **monitor_kwargs: Any) -> None:
        super().__init__()
        TrainingMonitor(**monitor_kwargs).close()  # validate the configuration now, not at fit time
        self.probe_model = probe_model
        self.report_dir = report_dir
        self.monitor_kwargs = monitor_kwargs
        self.monitor: TrainingMonitor | None = None
        self.report: Report | None = None
        self._restored: dict[str, Any] | None = None
        self._lr: float | None = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        previous = self.monitor.state_dict() if self.monitor is not None and self.monitor.finished else None
        if self.monitor is None or previous is not None:  # a second fit() continues the history
            self.monitor = TrainingMonitor(pl_module if self.probe_model else None, logger=_LOGGER,
                                           **self.monitor_kwargs)
            state = self._restored if self._restored is not None else previous
            if state is not None:
                self.monitor.load_state_dict(state)
                self._restored = None

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.monitor is None:
            return
        fields = outputs if isinstance(outputs, Mapping) else {"loss": outputs}
        loss = fields.get("loss")
        if loss is None:  # training_step skipped this batch
            return
        lr, self._lr = self._lr, None
        if lr is None:  # no optimiser step seen (manual optimisation): the lr now is the best guess
            optimizers = getattr(trainer, "optimizers", None) or []
            lr = optimizers[0].param_groups[0]["lr"] if optimizers else None
        self.monitor.observe(loss, logits=fields.get("logits"), targets=fields.get("targets"),
                             batch_size=batch_size_of(batch), lr=lr, step=trainer.global_step - 1)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        # Lightning steps "step"-interval schedulers before on_train_batch_end: read this step's lr here.
        if self._lr is None:
            self._lr = float(optimizer.param_groups[0]["lr"])

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.monitor is not None:
            self.report = self.monitor.finish(self.report_dir)  # rank 0 merges every rank's findings

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        # A failed rank still sends its findings (and the failure itself) to rank 0 and ends its summary.
        if self.monitor is not None and self.monitor.finished is None:
            self.monitor.fail(exception, step=trainer.global_step)
            self.report = self.monitor.finish(self.report_dir)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.monitor is not None:
            self.monitor.close()

    def state_dict(self) -> dict[str, Any]:
        return self.monitor.state_dict() if self.monitor is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if self.monitor is not None and self.monitor.finished is None:
            self.monitor.load_state_dict(state_dict)
        else:
            self._restored = state_dict
