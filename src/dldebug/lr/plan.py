"""A learning-rate plan for a new batch size: the scaled rate and its warm-up, as a Report."""

from __future__ import annotations

from typing import Any

from dldebug.errors import InputError
from dldebug.findings import Figure, Finding, Report, Series, Severity, Table
from dldebug.lr.scaling import Rule, scale_lr
from dldebug.lr.warmup import warmup_schedule


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
        A Report with an ``lr.scaled`` finding, a schedule table and a plot.
    """
    scaled = scale_lr(base_lr, base_batch_size, batch_size, rule=rule, optimizer=optimizer)
    findings = [Finding("lr.scaled", Severity.INFO, f"use lr {scaled.lr:.4g} at batch {batch_size}",
                        {"base_lr": base_lr, "base_batch_size": base_batch_size, "batch_size": batch_size,
                         "rule": scaled.rule, "factor": scaled.factor, "lr": scaled.lr},
                        fix=scaled.rationale, lesson=11)]
    tables: list[Table] = []
    figures: list[Figure] = []
    if warmup_epochs:
        if not steps_per_epoch or steps_per_epoch <= 0:
            raise InputError("a warm-up needs steps_per_epoch (optimiser steps per epoch at the new batch size), "
                             f"a positive integer; got {steps_per_epoch!r}.")
        steps = max(1, round(warmup_epochs * steps_per_epoch))
        factor = start_factor if start_factor is not None else min(1.0, 1.0 / scaled.factor)
        values = warmup_schedule(scaled.lr, steps, start_factor=factor, total_steps=steps + steps_per_epoch)
        marks = sorted({0, *(min(steps, round(e * steps_per_epoch)) for e in range(1, int(warmup_epochs) + 1)),
                        steps})
        tables.append(Table("lr.warmup_schedule", ("step", "epoch", "lr"),
                            tuple((s, round(s / steps_per_epoch, 3), values[s]) for s in marks),
                            caption=f"linear warm-up over {steps} steps ({warmup_epochs:g} epochs), "
                                    f"from {values[0]:.4g} to {scaled.lr:.4g}"))
        figures.append(Figure("lr.warmup", title="Learning rate per step",
                              series=(Series("lr", list(range(len(values))), values, "step"),),
                              markers=((steps, "warm-up ends"),), xlabel="step", ylabel="learning rate"))
    return Report(findings, title="Learning-rate plan", tables=tables, figures=figures)
