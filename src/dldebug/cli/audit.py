"""``dldebug audit``: run every model check (capacity, equivariance, finite output) on a model."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from dldebug.cli.common import FAIL_ON_OPTION, HTML_OPTION, JSON_OPTION, WEIGHTS_OPTION, FailOn, emit
from dldebug.errors import InputError


class TaskChoice(str, Enum):
    """``--task`` values."""

    dense = "dense"
    classification = "classification"


def command(
    model: str = typer.Argument(..., help="'package.module:factory', or a .pt2 torch.export archive."),
    input: str = typer.Option(None, "--input", help="An input batch: a shape such as 8x3x64x64 (random, "
                              "seeded) or a .npy/.npz/.pt file (FILE:KEY picks an array)."),
    task: TaskChoice = typer.Option(None, "--task", help="What the model predicts (default: inferred from the "
                                    "output shape).", case_sensitive=False),
    n_train: int = typer.Option(None, "--n-train", min=1, help="Training set size, for parameters per sample."),
    weights: Path = WEIGHTS_OPTION,
    as_json: bool = JSON_OPTION,
    html: Path = HTML_OPTION,
    fail_on: FailOn = FAIL_ON_OPTION,
) -> None:
    """Audit a model: parameter counts, a dominant layer, equivariance/invariance per layer."""
    from dldebug.checks import check_model
    from dldebug.io import OnnxModel, load_input, load_model

    loaded = load_model(model, weights=weights)
    if isinstance(loaded, OnnxModel):
        raise InputError(f"dldebug audit needs a PyTorch model; {model} is an ONNX file. Give the PyTorch "
                         "'package.module:factory' (with --weights) or a torch.export .pt2 archive.")
    example = load_input(input) if input is not None else None
    report = check_model(loaded, example, task=task.value if task is not None else None, n_train_samples=n_train)
    emit(report, as_json=as_json, html=html, fail_on=fail_on)
