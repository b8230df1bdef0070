"""Learning-rate scaling rules for a changed batch size (lesson 11).

Goyal et al. 2017 ("ImageNet in 1 hour") scale SGD's learning rate linearly,
lr = 0.1 x b / 256, with a gradual warm-up; He et al. 2019 ("Bag of Tricks")
use the same rule. Adaptive optimisers (Adam family) follow a square-root rule
better (Malladi et al. 2022, "On the SDEs and scaling rules for adaptive
gradient algorithms").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from dldebug.arguments import integer, real, received
from dldebug.errors import ConfigError, InputError

Rule = Literal["linear", "sqrt", "auto"]
_RULES = ("linear", "sqrt", "auto")
_ADAPTIVE = ("adam", "adamw", "adamax", "nadam", "radam", "adagrad", "adadelta", "rmsprop", "lamb", "adafactor")
_SGD_FAMILY = ("sgd", "lars", "asgd", "sgdw")


@dataclass(frozen=True)
class LRScale:
    """A scaled learning rate and why.

    Attributes:
        lr: the suggested learning rate.
        rule: the rule applied, ``"linear"`` or ``"sqrt"``.
        factor: ``lr / base_lr``.
        rationale: one line citing the rule.
    """

    lr: float
    rule: Literal["linear", "sqrt"]
    factor: float
    rationale: str

    def __float__(self) -> float:
        return self.lr


def optimizer_family(optimizer: torch.optim.Optimizer | str | None) -> Literal["sgd", "adaptive"] | None:
    """``"sgd"`` for SGD-like optimisers, ``"adaptive"`` for Adam-like ones, None when unknown."""
    if optimizer is None:
        return None
    name = (optimizer if isinstance(optimizer, str) else type(optimizer).__name__).lower()
    if name in _ADAPTIVE or name.startswith("adam"):
        return "adaptive"
    if name in _SGD_FAMILY:
        return "sgd"
    return None


def scale_lr(
    base_lr: float,
    base_batch_size: int,
    batch_size: int,
    *,
    rule: Rule = "auto",
    optimizer: torch.optim.Optimizer | str | None = None,
) -> LRScale:
    """Scale a learning rate tuned at ``base_batch_size`` to ``batch_size``.

    Args:
        base_lr: the learning rate that worked at ``base_batch_size``.
        base_batch_size: the batch size it was tuned for.
        batch_size: the new batch size.
        rule: ``"linear"`` (Goyal et al. 2017), ``"sqrt"`` (Malladi et al. 2022) or
            ``"auto"``: linear for SGD-family optimisers, sqrt for Adam-family ones.
        optimizer: an optimizer instance or name (``"sgd"``, ``"adam"``), used by ``"auto"``.

    Returns:
        An :class:`LRScale` with the value and a one-line rationale.

    Raises:
        InputError: a learning rate that is not a positive finite number, batch sizes that are not
            positive integers (bools are not numbers), an optimizer that is neither an optimizer nor a name.
        ConfigError: an unknown rule.

    Example:
        >>> s = scale_lr(0.1, 256, 8192, rule="linear")
        >>> round(s.lr, 6), s.rule
        (3.2, 'linear')
        >>> scale_lr(1e-3, 64, 256, optimizer="adam").rule
        'sqrt'
    """
    if not isinstance(rule, str) or rule not in _RULES:
        raise ConfigError(f"Unknown rule {rule!r}; expected one of {list(_RULES)}.")
    base_lr = real(base_lr, "base_lr must be a positive finite number", low=0.0)
    base_batch_size = integer(base_batch_size, "base_batch_size must be a positive integer")
    batch_size = integer(batch_size, "batch_size must be a positive integer")
    if optimizer is not None and not isinstance(optimizer, (str, torch.optim.Optimizer)):
        raise InputError(f"optimizer must be a torch optimizer, its name ('sgd', 'adam') or None; got "
                         f"{received(optimizer)}.")
    ratio = batch_size / base_batch_size
    chosen: Literal["linear", "sqrt"]
    family = optimizer_family(optimizer)
    if rule == "auto":
        chosen = "sqrt" if family == "adaptive" else "linear"
        unknown = ("no optimiser given" if optimizer is None else
                   f"optimiser {optimizer if isinstance(optimizer, str) else type(optimizer).__name__!r} of "
                   "unknown family")
        why = {"adaptive": "an Adam-family optimiser", "sgd": "an SGD-family optimiser",
               None: f"{unknown} (linear assumed, as for SGD)"}[family]
        picked = f"auto picked {chosen} for {why}; "
    else:
        chosen, picked = rule, ""
    factor = ratio if chosen == "linear" else math.sqrt(ratio)
    lr = base_lr * factor
    if chosen == "linear":
        cite = "linear scaling rule lr x b/b0 (Goyal et al. 2017; He et al. 2019), with a gradual warm-up"
    else:
        cite = "square-root scaling rule lr x sqrt(b/b0) for adaptive optimisers (Malladi et al. 2022)"
    rationale = (f"{picked}batch {base_batch_size} -> {batch_size} (x{ratio:g}): lr {base_lr:g} -> {lr:.4g} "
                 f"by the {cite}.")
    return LRScale(lr=lr, rule=chosen, factor=factor, rationale=rationale)
