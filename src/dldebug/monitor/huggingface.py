"""A Hugging Face ``TrainerCallback`` that feeds a :class:`TrainingMonitor` (``transformers`` extra).

Example::

    from dldebug.monitor.huggingface import MonitorCallback
    callback = MonitorCallback(every=20)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])
    trainer.train()
    print(callback.report)

The callback reads each step's loss and logits from the model's own output
(a forward hook on the top-level model), so it sees every step whatever
``logging_steps`` is; micro-batches of gradient accumulation are averaged.
The batch size it reports is the effective one (per device x accumulation x
processes). Its state is saved in ``trainer_state.json`` (``ExportableState``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from dldebug.errors import require
from dldebug.findings import Report
from dldebug.monitor.monitor import TrainingMonitor

_tf = require("transformers", extra="transformers", feature="dldebug.monitor.huggingface.MonitorCallback")

__all__ = ["MonitorCallback"]

_Exportable = getattr(_tf.trainer_callback, "ExportableState", object)


class MonitorCallback(_tf.TrainerCallback, _Exportable):  # type: ignore[misc,name-defined,valid-type]
    """Observe every optimiser step of a ``transformers.Trainer``; ``report`` is set after training.

    Args:
        probe_model: hook the model's layers to name the first non-finite module.
        **monitor_kwargs: passed to :class:`TrainingMonitor` (``every``, ``strict``,
            ``base_batch_size``, ``base_lr``, ``layer_stats``, ``capacity``).
    """

    def __init__(self, *, probe_model: bool = True, **monitor_kwargs: Any) -> None:
        TrainingMonitor(**monitor_kwargs)  # validate the configuration now
        self.probe_model = probe_model
        self.monitor_kwargs = monitor_kwargs
        self.monitor: TrainingMonitor | None = None
        self.report: Report | None = None
        self.restored_state: dict[str, Any] | None = None
        self._hook: Any = None
        self._reset_step()

    def _reset_step(self) -> None:
        self._loss_sum: torch.Tensor | None = None
        self._micro_batches = 0
        self._logits: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None

    def _capture(self, module: torch.nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return
        fields = output if isinstance(output, Mapping) else {}
        loss = fields.get("loss")
        if not isinstance(loss, torch.Tensor):
            return
        loss = loss.detach().float().mean()
        self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
        self._micro_batches += 1
        logits, labels = fields.get("logits"), kwargs.get("labels")
        self._logits = logits if isinstance(logits, torch.Tensor) else None
        # Only per-sample class labels line up with logit rows (causal LMs shift theirs inside the model).
        self._labels = labels if isinstance(labels, torch.Tensor) and labels.dim() == 1 else None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self.monitor is None:
            self.monitor = TrainingMonitor(model if self.probe_model else None, **self.monitor_kwargs)
            if self.restored_state:
                self.monitor.load_state_dict(self.restored_state)
        if model is not None and self._hook is None:
            self._hook = model.register_forward_hook(self._capture, with_kwargs=True)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is None or self._loss_sum is None:
            return
        scheduler, optimizer = kwargs.get("lr_scheduler"), kwargs.get("optimizer")
        lr = (scheduler.get_last_lr()[0] if scheduler is not None
              else optimizer.param_groups[0]["lr"] if optimizer is not None else None)
        batch_size = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        self.monitor.observe(self._loss_sum / self._micro_batches, logits=self._logits, targets=self._labels,
                             batch_size=batch_size, lr=lr, step=state.global_step - 1)
        self._reset_step()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is not None:
            self.report = self.monitor.report()
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def state(self) -> dict[str, Any]:
        """``ExportableState``: what ``trainer_state.json`` keeps for a resumed run."""
        return {"args": {"probe_model": self.probe_model, **self.monitor_kwargs},
                "attributes": {"restored_state": self.monitor.state_dict() if self.monitor else None}}
