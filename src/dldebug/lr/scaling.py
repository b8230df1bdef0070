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
        InputError: non-positive learning rate or batch sizes.
        ConfigError: an unknown rule.

    Example:
        >>> s = scale_lr(0.1, 256, 8192, rule="linear")
        >>> round(s.lr, 6), s.rule
        (3.2, 'linear')
        >>> scale_lr(1e-3, 64, 256, optimizer="adam").rule
        'sqrt'
    """
    if rule not in _RULES:
        raise ConfigError(f"Unknown rule {rule!r}; expected one of {list(_RULES)}.")
    if not (isinstance(base_lr, (int, float)) and math.isfinite(base_lr) and base_lr > 0):
        raise InputError(f"base_lr must be a positive finite number; got {base_lr!r}.")
    for label, value in (("base_batch_size", base_batch_size), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InputError(f"{label} must be a positive integer; got {value!r}.")
    ratio = batch_size / base_batch_size
    chosen: Literal["linear", "sqrt"]
    family = optimizer_family(optimizer)
    if rule == "auto":
        chosen = "sqrt" if family == "adaptive" else "linear"
        why = {"adaptive": "an Adam-family optimiser", "sgd": "an SGD-family optimiser",
               None: "no optimiser given (linear assumed, as for SGD)"}[family]
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
