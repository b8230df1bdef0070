"""The training set-up a pre-flight check inspects, copied so the user's objects stay untouched."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dldebug.errors import InputError

TrainStep = Callable[[nn.Module, Any, Any, torch.optim.Optimizer], Any]  # (model, batch, loss_fn, optimizer)


@dataclass
class TrainingSetup:
    """A model, one batch, the loss and the optimizer of a training set-up."""

    model: nn.Module
    inputs: torch.Tensor
    targets: torch.Tensor
    loss_fn: Callable[..., torch.Tensor]
    optimizer: torch.optim.Optimizer
    train_step: TrainStep | None = None
    _train_output: Any = field(default=None, init=False, repr=False)

    @classmethod
    def from_args(cls, model: Any, batch: Any, loss_fn: Any, optimizer: Any,
                  train_step: TrainStep | None = None) -> TrainingSetup:
        if not isinstance(model, nn.Module):
            raise InputError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise InputError(f"batch must be an (inputs, targets) pair; got {type(batch).__name__}"
                             f"{f' of length {len(batch)}' if isinstance(batch, (tuple, list)) else ''}.")
        inputs, targets = batch[0], batch[1]
        for label, value in (("inputs", inputs), ("targets", targets)):
            if not isinstance(value, torch.Tensor):
                raise InputError(f"batch {label} must be a tensor; got {type(value).__name__}.")
        if inputs.ndim == 0 or len(inputs) == 0:
            raise InputError(f"batch inputs must have a batch dimension with at least one sample; got shape "
                             f"{tuple(inputs.shape)}.")
        if not callable(loss_fn):
            raise InputError(f"loss_fn must be callable; got {type(loss_fn).__name__}.")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise InputError(f"optimizer must be a torch.optim.Optimizer; got {type(optimizer).__name__}.")
        return cls(model, inputs, targets, loss_fn, optimizer, train_step)

    @property
    def batch_size(self) -> int:
        return int(self.inputs.shape[0])

    def train_output(self) -> Any:
        """The model's output on the batch in train mode without gradients, from a copy; computed once."""
        if self._train_output is None:
            work = self.copy()
            work.model.train()
            with torch.no_grad():
                self._train_output = work.model(self.inputs)
        return self._train_output

    def copy(self, *, lr: float | None = None) -> TrainingSetup:
        """A deep copy of model and optimizer (state included); ``lr`` overrides every group's rate."""
        model = copy.deepcopy(self.model)
        originals = dict(self.model.named_parameters())
        copies = dict(model.named_parameters())
        by_id = {id(p): copies[name] for name, p in originals.items()}
        groups = []
        for group in self.optimizer.param_groups:
            params = [by_id[id(p)] for p in group["params"] if id(p) in by_id]
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": params})
        try:  # built-in optimizers accept their own defaults back as keyword arguments
            optimizer = type(self.optimizer)(groups, **self.optimizer.defaults)  # type: ignore[call-arg]
        except TypeError:
            optimizer = type(self.optimizer)(groups)  # type: ignore[call-arg]
        state = copy.deepcopy(self.optimizer.state_dict())
        if all(len(g["params"]) == len(o["params"]) for g, o in zip(groups, self.optimizer.param_groups,
                                                                      strict=True)):
            optimizer.load_state_dict(state)
        if lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr
        loss_fn = copy.deepcopy(self.loss_fn) if isinstance(self.loss_fn, nn.Module) else self.loss_fn
        return TrainingSetup(model, self.inputs, self.targets, loss_fn, optimizer, self.train_step)
