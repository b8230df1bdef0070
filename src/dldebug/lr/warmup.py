"""A gradual linear warm-up that composes with any torch scheduler (lesson 11).

Built on ``torch.optim.lr_scheduler.LinearLR`` and ``SequentialLR`` rather than
a hand-rolled scheduler, so it checkpoints with ``state_dict()`` like any other.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LinearLR, LRScheduler, SequentialLR

from dldebug.arguments import integer, real, received
from dldebug.errors import InputError

AfterScheduler = LRScheduler | Callable[[torch.optim.Optimizer], LRScheduler] | None


MAX_SCHEDULE_STEPS = 1_000_000  # warmup_schedule steps a real scheduler once per value: ~40 s at this length


def check_start_factor(start_factor: object) -> float:
    """``start_factor`` as a float in (0, 1].

    Raises:
        InputError: not a finite number in (0, 1] (a bool is not a number).
    """
    try:
        return real(start_factor, "start_factor must be in (0, 1]", low=0.0, high=1.0, high_closed=True)
    except InputError as exc:
        raise InputError(f"{exc} It is the first step's fraction of the target learning rate.") from None


def warmup(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    *,
    start_factor: float = 0.1,
    after: AfterScheduler = None,
) -> LRScheduler:
    """Ramp every learning rate linearly from ``start_factor x lr`` to ``lr`` over ``warmup_steps``.

    Call ``scheduler.step()`` once per optimiser step. Goyal et al. 2017 warm up
    from the small-batch learning rate to the scaled one: pass
    ``start_factor=1 / scale_lr(...).factor`` to follow them exactly.

    Args:
        optimizer: the optimizer whose learning rates are the warm-up targets.
        warmup_steps: number of steps of the ramp (> 0).
        start_factor: the first step's fraction of the target rate, in (0, 1].
        after: the schedule that follows the warm-up: a scheduler built on the same
            optimizer, or a callable ``optimizer -> scheduler`` (preferred: it is
            built after the warm-up has set the initial rates).

    Returns:
        A ``LinearLR``, or a ``SequentialLR`` of it and ``after``.

    Raises:
        InputError: not an optimizer, steps that are not a positive integer, a start factor outside
            (0, 1], or an ``after`` scheduler bound to another optimizer.

    Example:
        >>> p = torch.nn.Parameter(torch.zeros(1))
        >>> opt = torch.optim.SGD([p], lr=1.0)
        >>> sched = warmup(opt, 4, start_factor=0.25)
        >>> lrs = []
        >>> for _ in range(5):
        ...     lrs.append(opt.param_groups[0]["lr"]); opt.step(); sched.step()
        >>> [round(v, 4) for v in lrs]
        [0.25, 0.4375, 0.625, 0.8125, 1.0]
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise InputError(f"optimizer must be a torch optimizer (torch.optim.SGD, AdamW ...); got "
                         f"{received(optimizer)}.")
    steps = integer(warmup_steps, "warmup_steps must be a positive integer")
    factor = check_start_factor(start_factor)
    ramp = LinearLR(optimizer, start_factor=factor, end_factor=1.0, total_iters=steps)
    if after is None:
        return ramp
    follower = after(optimizer) if callable(after) and not isinstance(after, LRScheduler) else after
    if not isinstance(follower, LRScheduler):
        raise InputError("after must be a torch LR scheduler or a callable returning one; "
                         f"got {type(follower).__name__}.")
    if follower.optimizer is not optimizer:
        raise InputError("after is bound to a different optimizer than the warm-up; build it on the same optimizer.")
    return SequentialLR(optimizer, schedulers=[ramp, follower], milestones=[steps])


def warmup_schedule(base_lr: float, warmup_steps: int, *, start_factor: float = 0.1,
                    total_steps: int | None = None) -> list[float]:
    """The learning rate at each step of :func:`warmup` (constant after it), computed by torch itself.

    Args:
        base_lr: the target learning rate.
        warmup_steps, start_factor: as :func:`warmup`.
        total_steps: how many values (default ``warmup_steps + 1``), at most :data:`MAX_SCHEDULE_STEPS`.

    Returns:
        One learning rate per step.

    Raises:
        InputError: arguments of the wrong type or range, or more than :data:`MAX_SCHEDULE_STEPS` steps.
    """
    base_lr = real(base_lr, "base_lr must be a positive finite number", low=0.0)
    steps = integer(warmup_steps, "warmup_steps must be a positive integer")
    total = steps + 1 if total_steps is None else integer(total_steps, "total_steps must be a positive integer")
    if total > MAX_SCHEDULE_STEPS:
        raise InputError(f"warmup_schedule computes one value per step, at most {MAX_SCHEDULE_STEPS:,}; asked for "
                         f"{total:,} (warmup_steps={steps:,}). The scheduler itself (dldebug.lr.warmup) has no "
                         "such limit.")
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=base_lr)
    scheduler = warmup(optimizer, steps, start_factor=start_factor)
    values = []
    for _ in range(total):
        values.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step()
        scheduler.step()
    return values
