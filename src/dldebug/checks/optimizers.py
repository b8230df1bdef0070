"""The user's optimizer, rebuilt on copied parameters: same type, same hyper-parameters per group.

A check that trains a copy of a model must train it the way the user will: SGD with momentum
0.9 over-fits a batch in a third of the steps Adam 1e-3 needs, and a frozen group stays frozen.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["describe_optimizer", "parameter_mapping", "rebuild_optimizer"]

# hyper-parameters worth naming in a message, in this order, when the optimizer has them
_NAMED = ("lr", "momentum", "betas", "weight_decay", "alpha", "eps")
_QUIET_DEFAULTS = {"momentum": 0, "weight_decay": 0, "eps": 1e-8}


def parameter_mapping(original: nn.Module, duplicate: nn.Module) -> dict[int, nn.Parameter]:
    """``id(original parameter) -> the matching parameter of a deep copy``, matched by name."""
    copies = dict(duplicate.named_parameters(remove_duplicate=False))
    return {id(p): copies[name] for name, p in original.named_parameters(remove_duplicate=False) if name in copies}


def rebuild_optimizer(optimizer: torch.optim.Optimizer, mapping: Mapping[int, nn.Parameter], *,
                      lr: float | None = None, keep_state: bool = False) -> torch.optim.Optimizer:
    """An optimizer of the same type and per-group hyper-parameters over the mapped parameters.

    Args:
        optimizer: the user's optimizer (left untouched).
        mapping: ``id(user parameter) -> copied parameter`` (:func:`parameter_mapping`); parameters
            it does not map are left out.
        lr: overrides every group's learning rate.
        keep_state: also copy the optimizer's state (momentum buffers, Adam moments).

    Returns:
        The new optimizer.
    """
    groups = []
    for group in optimizer.param_groups:
        params = [mapping[id(p)] for p in group["params"] if id(p) in mapping]
        groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": params})
    try:  # built-in optimizers accept their own defaults back as keyword arguments
        rebuilt = type(optimizer)(groups, **optimizer.defaults)  # type: ignore[call-arg]
    except TypeError:
        rebuilt = type(optimizer)(groups)  # type: ignore[call-arg]
    same_shape = all(len(g["params"]) == len(o["params"])
                     for g, o in zip(groups, optimizer.param_groups, strict=True))
    if keep_state and same_shape:
        rebuilt.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    if lr is not None:
        for group in rebuilt.param_groups:
            group["lr"] = lr
    return rebuilt


def _value(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_value(v) for v in value) + ")"
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe_optimizer(optimizer: torch.optim.Optimizer) -> str:
    """``"SGD (lr 0.05, momentum 0.9)"``: the type and the first group's non-default hyper-parameters.

    Example:
        >>> describe_optimizer(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.05, momentum=0.9))
        'SGD (lr 0.05, momentum 0.9)'
    """
    group = optimizer.param_groups[0] if optimizer.param_groups else {}
    parts = [f"{key} {_value(group[key])}" for key in _NAMED
             if key in group and not (key in _QUIET_DEFAULTS and group[key] == _QUIET_DEFAULTS[key])
             and not (key in ("betas", "eps", "alpha") and type(optimizer).__name__ in ("Adam", "AdamW"))]
    return f"{type(optimizer).__name__} ({', '.join(parts)})" if parts else type(optimizer).__name__
