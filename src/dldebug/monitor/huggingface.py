"""A Hugging Face ``TrainerCallback`` that feeds a :class:`TrainingMonitor` (``transformers`` extra).

Example::

    from dldebug.monitor.huggingface import MonitorCallback
    callback = MonitorCallback(every=20, report_dir="dldebug-report")
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])
    trainer.train()
    print(callback.report)

The callback reads each step's loss and logits from the model's own output (a process-wide
forward hook that watches the top-level model only), so it sees every step whatever
``logging_steps`` is; micro-batches of gradient accumulation are averaged. It observes each step
in ``on_optimizer_step``, after the optimiser step and before the Trainer zeroes the gradients,
so per-layer gradient norms are measured. The batch size it reports is the effective one (per
device x accumulation x processes). Its state goes into each checkpoint folder
(``dldebug_monitor.json``) and is read back on resume, with Hugging Face's defaults; the
callback object you passed keeps the report (it is not an ``ExportableState``, so the Trainer
never replaces it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dldebug.errors import require
from dldebug.findings import Report
from dldebug.monitor.distributed import rank_and_world
from dldebug.monitor.monitor import TrainingMonitor
from dldebug.monitor.probes import watch_forward

_tf = require("transformers", extra="transformers", feature="dldebug.monitor.huggingface.MonitorCallback")

__all__ = ["STATE_FILE", "MonitorCallback"]

#: The monitor's state in each checkpoint folder (rank N > 0 writes ``dldebug_monitor.rankN.json``).
STATE_FILE = "dldebug_monitor.json"


def _state_file(folder: Path) -> Path:
    rank = rank_and_world()[0]
    return folder / (STATE_FILE if rank == 0 else f"dldebug_monitor.rank{rank}.json")


class MonitorCallback(_tf.TrainerCallback):  # type: ignore[misc,name-defined]
    """Observe every optimiser step of a ``transformers.Trainer``; ``report`` is set after training.

    Args:
        probe_model: watch the model's layers to name the first non-finite module.
        report_dir: where rank 0 writes ``report.html`` and ``report.json`` at the end of training.
        **monitor_kwargs: passed to :class:`TrainingMonitor` (``every``, ``strict``,
            ``base_batch_size``, ``base_lr``, ``layer_stats``, ``capacity``, ``gather_timeout``, ...).
    """

    def __init__(self, *, probe_model: bool = True, report_dir: str | Path | None = None,
                 **monitor_kwargs: Any) -> None:
        TrainingMonitor(**monitor_kwargs).close()  # validate the configuration now
        self.probe_model = probe_model
        self.report_dir = report_dir
        self.monitor_kwargs = monitor_kwargs
        self.monitor: TrainingMonitor | None = None
        self.report: Report | None = None
        self.resumed_from: Path | None = None
        self._hook: Any = None
        self._reset_step()

    def _reset_step(self) -> None:
        self._loss_sum: torch.Tensor | None = None
        self._micro_batches = 0
        self._logits: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None

    def _capture(self, _index: int, module: torch.nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        try:
            self._capture_step(module, kwargs, output)
        except Exception as exc:  # runs inside the model's forward: it must never break it
            if self.monitor is None or self.monitor.strict:
                raise
            self.monitor.record_error("Hugging Face forward hook", exc)

    def _capture_step(self, module: torch.nn.Module, kwargs: dict[str, Any], output: Any) -> None:
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
        previous = None
        if self.monitor is not None and self.monitor.finished is not None:  # train() again with this callback
            previous, self.monitor = self.monitor.state_dict(), None
        if self.monitor is None:
            self._new_monitor(model)
            if state.global_step > 0:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if not self._restore(folder, state.global_step, quiet=previous is not None) and previous:
                    self.monitor.load_state_dict(previous)  # type: ignore[attr-defined]  # later steps are replaced
        if model is not None and self._hook is None:
            self._hook = watch_forward(self, "_capture", [model], with_kwargs=True)

    def _new_monitor(self, model: Any) -> None:
        logger = _tf.utils.logging.get_logger("transformers.trainer.dldebug")
        self.monitor = TrainingMonitor(model if self.probe_model else None, logger=logger, **self.monitor_kwargs)

    def _restore(self, folder: Path, step: int, *, quiet: bool = False) -> bool:
        """Load the state saved in a checkpoint folder; say so when there is none (unless ``quiet``)."""
        assert self.monitor is not None
        path = _state_file(folder)
        try:
            self.monitor.load_state_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            if not quiet:
                self.monitor.logger.warning("dldebug: resuming at step %d, but no monitor state could be read from "
                                            "%s (%s); the monitor's history starts at this step.", step, path, exc)
            return False
        self.resumed_from = path
        return True

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # The gradients still exist here (the Trainer zeroes them before on_step_end), and the
        # scheduler has not stepped yet: its last lr is this step's.
        self._observe(args, state, kwargs, step=state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._observe(args, state, kwargs, step=state.global_step - 1)  # only if on_optimizer_step did not

    def _observe(self, args: Any, state: Any, kwargs: dict[str, Any], *, step: int) -> None:
        if self.monitor is None or self._loss_sum is None:
            return
        scheduler, optimizer = kwargs.get("lr_scheduler"), kwargs.get("optimizer")
        lr = (scheduler.get_last_lr()[0] if scheduler is not None
              else optimizer.param_groups[0]["lr"] if optimizer is not None else None)
        batch_size = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        self.monitor.observe(self._loss_sum / self._micro_batches, logits=self._logits, targets=self._labels,
                             batch_size=batch_size, lr=lr, step=step)
        self._reset_step()

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.monitor is None or not folder.is_dir():
            return
        try:
            from dldebug.report.atomic import write_text_atomic

            write_text_atomic(_state_file(folder), json.dumps(self.monitor.state_dict()))
        except Exception as exc:  # a checkpoint without the monitor's state is no reason to stop training
            self.monitor.logger.warning("dldebug: could not save the monitor state in %s: %s", folder, exc)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.monitor is not None:
            self.report = self.monitor.finish(self.report_dir)  # rank 0 merges every rank's findings
