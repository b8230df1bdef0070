"""``dldebug audit``: run every model check (capacity, equivariance, finite output) on a model."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from dldebug.cli.common import FAIL_ON_OPTION, HTML_OPTION, JSON_OPTION, WEIGHTS_OPTION, FailOn, emit, output_spec
from dldebug.errors import FileFormatError, InputError


class TaskChoice(str, Enum):
    """``--task`` values."""

    dense = "dense"
    classification = "classification"


def read_inputs(text: str) -> Any:
    """``--input`` through ``dldebug.io.load_model_inputs``; a file without arrays is one clear error."""
    from dldebug.io import load_model_inputs

    inputs = load_model_inputs(text)
    if isinstance(inputs, Mapping) and not inputs:
        raise FileFormatError("holds no array; save at least one (np.savez(path, x=array)).", path=text)
    return inputs


def command(
    model: str = typer.Argument(..., help="'package.module:factory' (any nn.Module, Hugging Face models "
                                "included), or a .pt2 torch.export archive."),
    input: str = typer.Option(None, "--input", help="The model's input: a shape such as 8x3x64x64 (random, "
                              "seeded), a .npy/.pt file (FILE:KEY picks an array), or an .npz/.pt of several "
                              "arrays passed as keyword arguments (input_ids, attention_mask, ...)."),
    output: str = typer.Option(None, "--output", help="Which tensor of a structured output to check: a name "
                               "(logits, last_hidden_state) or an index (default: logits, else "
                               "last_hidden_state, else the first tensor)."),
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
    from dldebug.io import OnnxModel, load_model

    loaded = load_model(model, weights=weights)
    if isinstance(loaded, OnnxModel):
        raise InputError(f"dldebug audit needs a PyTorch model; {model} is an ONNX file. Give the PyTorch "
                         "'package.module:factory' (with --weights) or a torch.export .pt2 archive.")
    example = read_inputs(input) if input is not None else None
    report = check_model(loaded, example, task=task.value if task is not None else None, n_train_samples=n_train,
                         output=output_spec(output))
    emit(report, as_json=as_json, html=html, fail_on=fail_on)
