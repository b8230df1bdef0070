"""The training set-up a pre-flight check inspects, copied so the user's objects stay untouched.

The batch is read by :mod:`dldebug.model_io`: ``(inputs, targets)``, ``(*inputs, targets)`` or a
dict of keyword arguments (targets under ``"labels"``); ``loss_fn=None`` means the model computes
its own loss; ``output=`` names the tensor the loss reads in a structured output.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dldebug.checks.losses import ClassLogits, class_logits
from dldebug.checks.optimizers import parameter_mapping, rebuild_optimizer
from dldebug.errors import InputError
from dldebug.model_io import Batch, LossFn, OutputSpec, iter_tensors, read_loss, select_output

__all__ = ["Forward", "TrainStep", "TrainingSetup"]

TrainStep = Callable[[nn.Module, Any, Any, torch.optim.Optimizer], Any]  # (model, batch, loss_fn, optimizer)
_TOOL = "preflight"


@dataclass(frozen=True)
class Forward:
    """One forward pass: the raw output, the tensor the loss reads, and the model's own loss (loss_fn=None)."""

    raw: Any
    logits: torch.Tensor | None
    own_loss: float | None


@dataclass
class TrainingSetup:
    """A model, one batch, the loss and the optimizer of a training set-up."""

    model: nn.Module
    batch: Batch
    raw_batch: Any  # as the user gave it: what their train_step receives
    loss_fn: LossFn | None
    optimizer: torch.optim.Optimizer
    train_step: TrainStep | None = None
    output: OutputSpec = None
    _forward: Forward | None = field(default=None, init=False, repr=False)
    _view: tuple[ClassLogits | None] | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_args(cls, model: Any, batch: Any, loss_fn: Any, optimizer: Any, train_step: TrainStep | None = None,
                  output: OutputSpec = None) -> TrainingSetup:
        """Validate the user's arguments; a clear InputError for each thing that is wrong."""
        if not isinstance(model, nn.Module):
            raise InputError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
        if loss_fn is not None and not callable(loss_fn):
            raise InputError(f"loss_fn must be callable, or None when the model computes its own loss; got "
                             f"{type(loss_fn).__name__}.")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise InputError(f"optimizer must be a torch.optim.Optimizer; got {type(optimizer).__name__}.")
        parsed = Batch.from_user(batch, loss_fn=loss_fn, tool=_TOOL)
        first = parsed.main_input()
        if first is None or first.dim() == 0 or len(first) == 0:
            raise InputError(f"preflight: the batch inputs need a batch dimension with at least one sample; got "
                             f"{'no tensor' if first is None else f'shape {tuple(first.shape)}'}.")
        return cls(model, parsed, batch, loss_fn, optimizer, train_step, output)

    @property
    def inputs(self) -> Any:
        return self.batch.inputs

    @property
    def targets(self) -> Any:
        return self.batch.targets

    @property
    def batch_size(self) -> int:
        return self.batch.size

    def float_input(self) -> torch.Tensor | None:
        """The first floating-point input tensor (images, features, audio), or None (token ids only)."""
        return next((t for t in iter_tensors(self.inputs) if t.is_floating_point()), None)

    def train_forward(self) -> Forward:
        """The model's output on the batch in train mode without gradients, from a copy; computed once."""
        if self._forward is None:
            work = self.copy()
            work.model.train()
            with torch.no_grad():
                raw = self.batch.call(work.model)
            try:
                logits: torch.Tensor | None = select_output(raw, self.output, tool=_TOOL)
            except InputError:
                logits = None
            own = float(read_loss(raw, tool=_TOOL)) if self.loss_fn is None else None
            self._forward = Forward(raw, logits, own)
        return self._forward

    def class_view(self) -> ClassLogits | None:
        """The class logits ``(N, C, ...)`` when the loss is a cross-entropy/NLL over them (see checks.losses)."""
        if self._view is None:
            forward = self.train_forward()
            self._view = (class_logits(self.loss_fn, forward.logits, self.targets, forward.own_loss),)
        return self._view[0]

    def copy(self, *, lr: float | None = None) -> TrainingSetup:
        """A deep copy of model and optimizer (state included); ``lr`` overrides every group's rate."""
        model = copy.deepcopy(self.model)
        optimizer = rebuild_optimizer(self.optimizer, parameter_mapping(self.model, model), lr=lr, keep_state=True)
        loss_fn = copy.deepcopy(self.loss_fn) if isinstance(self.loss_fn, nn.Module) else self.loss_fn
        return TrainingSetup(model, self.batch, self.raw_batch, loss_fn, optimizer, self.train_step, self.output)
