"""``dldebug lr``: scale a learning rate to a new batch size and lay out its warm-up."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from dldebug.cli.common import HTML_OPTION, JSON_OPTION, emit


class RuleChoice(str, Enum):
    auto = "auto"
    linear = "linear"
    sqrt = "sqrt"


def command(
    base_lr: float = typer.Option(..., "--base-lr", help="Learning rate tuned at the base batch size."),
    base_batch: int = typer.Option(..., "--base-batch", help="Batch size the base rate was tuned for."),
    batch: int = typer.Option(..., "--batch", help="The new batch size."),
    optimizer: str = typer.Option(None, "--optimizer", help="sgd, adam, adamw ... (picks the rule for --rule auto)."),
    rule: RuleChoice = typer.Option(RuleChoice.auto, "--rule", help="linear (SGD), sqrt (Adam) or auto."),
    warmup_epochs: float = typer.Option(0, "--warmup-epochs", help="Gradual warm-up length (Goyal et al.: 5)."),
    steps_per_epoch: int = typer.Option(None, "--steps-per-epoch", help="Optimiser steps per epoch at --batch."),
    start_factor: float = typer.Option(None, "--start-factor", help="First warm-up step's fraction of the rate "
                                       "(default: start from the old rate)."),
    as_json: bool = JSON_OPTION,
    html: Path = HTML_OPTION,
) -> None:
    """Print the scaled learning rate and its warm-up schedule."""
    from dldebug.lr import lr_plan

    report = lr_plan(base_lr, base_batch, batch, rule=rule.value, optimizer=optimizer,
                     warmup_epochs=warmup_epochs, steps_per_epoch=steps_per_epoch, start_factor=start_factor)
    emit(report, as_json=as_json, html=html)
