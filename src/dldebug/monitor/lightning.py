"""A Lightning ``Callback`` that feeds a :class:`TrainingMonitor` (needs the ``lightning`` extra).

Example::

    from dldebug.monitor.lightning import MonitorCallback
    callback = MonitorCallback(every=20)
    trainer = lightning.Trainer(callbacks=[callback])
    trainer.fit(module)
    print(callback.report)

``training_step`` may return a dict with ``"loss"`` plus ``"logits"`` and ``"targets"``
to enable the over-confidence check. The callback's state goes into Lightning
checkpoints, so a resumed run keeps its history.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from dldebug.errors import require
from dldebug.findings import Report
from dldebug.monitor.monitor import TrainingMonitor

_pl = require("lightning.pytorch", extra="lightning", feature="dldebug.monitor.lightning.MonitorCallback",
              package="lightning")

__all__ = ["MonitorCallback", "batch_size_of"]


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

    Args:
        probe_model: hook the LightningModule's layers to name the first non-finite module.
        **monitor_kwargs: passed to :class:`TrainingMonitor` (``every``, ``strict``,
            ``base_batch_size``, ``base_lr``, ``layer_stats``, ``capacity``).
    """

    def __init__(self, *, probe_model: bool = True, **monitor_kwargs: Any) -> None:
        super().__init__()
        TrainingMonitor(**monitor_kwargs)  # validate the configuration now, not at fit time
        self.probe_model = probe_model
        self.monitor_kwargs = monitor_kwargs
        self.monitor: TrainingMonitor | None = None
        self.report: Report | None = None
        self._restored: dict[str, Any] | None = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.monitor is None:
            self.monitor = TrainingMonitor(pl_module if self.probe_model else None, **self.monitor_kwargs)
            if self._restored is not None:
                self.monitor.load_state_dict(self._restored)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.monitor is None:
            return
        fields = outputs if isinstance(outputs, Mapping) else {"loss": outputs}
        loss = fields.get("loss")
        if loss is None:  # training_step skipped this batch
            return
        optimizers = getattr(trainer, "optimizers", None) or []
        lr = optimizers[0].param_groups[0]["lr"] if optimizers else None
        self.monitor.observe(loss, logits=fields.get("logits"), targets=fields.get("targets"),
                             batch_size=batch_size_of(batch), lr=lr)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.monitor is not None:
            self.report = self.monitor.report()  # every rank calls it: a collective under DDP

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.monitor is not None:
            self.monitor.close()

    def state_dict(self) -> dict[str, Any]:
        return self.monitor.state_dict() if self.monitor is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if self.monitor is not None:
            self.monitor.load_state_dict(state_dict)
        else:
            self._restored = state_dict
