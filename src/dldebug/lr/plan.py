"""A learning-rate plan for a new batch size: the scaled rate and its warm-up, as a Report."""

from __future__ import annotations

from typing import Any

from dldebug.arguments import integer, real
from dldebug.errors import InputError
from dldebug.findings import Figure, Finding, Report, Series, Severity, Table
from dldebug.lr.scaling import LRScale, Rule, scale_lr
from dldebug.lr.warmup import MAX_SCHEDULE_STEPS, check_start_factor, warmup_schedule

MAX_WARMUP_STEPS = MAX_SCHEDULE_STEPS // 2  # the plan lays out the warm-up and as many steps after it
_TABLE_EPOCHS = 20  # a longer warm-up lists 20 evenly spaced epochs in its table, not every one


def lr_plan(
    base_lr: float,
    base_batch_size: int,
    batch_size: int,
    *,
    rule: Rule = "auto",
    optimizer: Any = None,
    warmup_epochs: float = 0,
    steps_per_epoch: int | None = None,
    start_factor: float | None = None,
) -> Report:
    """Scale ``base_lr`` to ``batch_size`` and lay out the warm-up, step by step.

    Args:
        base_lr, base_batch_size, batch_size, rule, optimizer: as :func:`dldebug.lr.scale_lr`.
        warmup_epochs: length of the gradual warm-up (Goyal et al. 2017 use 5); 0 for none.
        steps_per_epoch: optimiser steps per epoch at the new batch size (needed for a warm-up).
        start_factor: first warm-up step's fraction of the scaled rate; default ``1 / factor``,
            i.e. the warm-up starts at the old rate, as in Goyal et al.

    Returns:
        A Report with an ``lr.scaled`` finding, a schedule table and a plot (the warm-up and up to
        one epoch, or as many steps as the warm-up, after it).

    Raises:
        InputError: as :func:`dldebug.lr.scale_lr`; a ``warmup_epochs`` that is not a finite number
            >= 0, a warm-up without a positive integer ``steps_per_epoch``, a ``start_factor`` outside
            (0, 1], or a warm-up longer than :data:`MAX_WARMUP_STEPS` steps.
    """
    scaled = scale_lr(base_lr, base_batch_size, batch_size, rule=rule, optimizer=optimizer)
    epochs = real(warmup_epochs, "warmup_epochs must be a finite number >= 0 (0: no warm-up)", low=0.0,
                  low_closed=True)
    findings = [Finding("lr.scaled", Severity.INFO, f"use lr {scaled.lr:.4g} at batch {batch_size}",
                        {"base_lr": float(base_lr), "base_batch_size": int(base_batch_size),
                         "batch_size": int(batch_size),
                         "rule": scaled.rule, "factor": scaled.factor, "lr": scaled.lr},
                        fix=scaled.rationale, lesson=11)]
    tables: list[Table] = []
    figures: list[Figure] = []
    if epochs:
        table, figure = _warmup_plan(scaled, epochs, steps_per_epoch, start_factor)
        tables.append(table)
        figures.append(figure)
    return Report(findings, title="Learning-rate plan", tables=tables, figures=figures)


def _warmup_plan(scaled: LRScale, epochs: float, steps_per_epoch: Any, start_factor: Any) -> tuple[Table, Figure]:
    """The warm-up's schedule table (step, epoch, lr at epoch boundaries) and its per-step plot."""
    per_epoch = integer(steps_per_epoch, "a warm-up needs steps_per_epoch (optimiser steps per epoch at the new "
                                         "batch size), a positive integer")
    steps = max(1, round(epochs * per_epoch))
    if steps > MAX_WARMUP_STEPS:
        raise InputError(f"a warm-up of {steps:,} steps (warmup_epochs={epochs:g} x steps_per_epoch={per_epoch:,}) "
                         f"is more than the {MAX_WARMUP_STEPS:,} steps lr_plan lays out. Check the units "
                         "(warmup_epochs in epochs, steps_per_epoch in optimiser steps); for so long a ramp use "
                         "dldebug.lr.warmup(optimizer, steps) directly.")
    factor = check_start_factor(start_factor) if start_factor is not None else min(1.0, 1.0 / scaled.factor)
    values = warmup_schedule(scaled.lr, steps, start_factor=factor, total_steps=steps + min(per_epoch, steps))
    whole = int(epochs)
    marked = (range(1, whole + 1) if whole <= _TABLE_EPOCHS
              else (round(i * whole / _TABLE_EPOCHS) for i in range(1, _TABLE_EPOCHS + 1)))
    marks = sorted({0, *(min(steps, round(e * per_epoch)) for e in marked), steps})
    table = Table("lr.warmup_schedule", ("step", "epoch", "lr"),
                  tuple((s, round(s / per_epoch, 3), values[s]) for s in marks),
                  caption=f"linear warm-up over {steps} steps ({epochs:g} epochs), "
                          f"from {values[0]:.4g} to {scaled.lr:.4g}")
    figure = Figure("lr.warmup", title="Learning rate per step",
                    series=(Series("lr", list(range(len(values))), values, "step"),),
                    markers=((steps, "warm-up ends"),), xlabel="step", ylabel="learning rate")
    return table, figure
