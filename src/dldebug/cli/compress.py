"""``dldebug compress``: truncated-SVD compression of a model's linear layers, saved as a .pt2 archive."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from dldebug.cli.common import FAIL_ON_OPTION, HTML_OPTION, JSON_OPTION, WEIGHTS_OPTION, FailOn, console, emit
from dldebug.errors import InputError


def command(
    model: str = typer.Argument(..., help="The model: 'package.module:factory' (with --weights FILE)."),
    energy: float = typer.Option(None, "--energy", help="Keep this fraction of each layer's spectral "
                                 "energy, e.g. 0.95."),
    rank: int = typer.Option(None, "--rank", help="The same rank for every layer."),
    max_error: float = typer.Option(None, "--max-error", help="Per-layer relative output error budget on "
                                    "--calib data, e.g. 0.05."),
    param_ratio: float = typer.Option(None, "--param-ratio", help="Global budget: keep this fraction of the "
                                      "layers' parameters, e.g. 0.3."),
    calib: str = typer.Option(None, "--calib", help="Calibration inputs (.npy/.npz/.pt, FILE:KEY): enables "
                              "output errors and the data-aware factorisation."),
    weights: Path = WEIGHTS_OPTION,
    example_input: str = typer.Option(None, "--input", help="Example input for torch.export: a shape such as "
                                      "1x1x8x8, or FILE (default: the first --calib rows)."),
    layers: list[str] = typer.Option(None, "--layer", help="Compress only this layer (repeatable)."),
    out: Path = typer.Option(..., "--out", help="Write the compressed model here (a torch.export .pt2 "
                             "archive; load it with dldebug.io.load_model or torch.export.load).",
                             dir_okay=False),
    as_json: bool = JSON_OPTION,
    html: Path = HTML_OPTION,
    fail_on: FailOn = FAIL_ON_OPTION,
) -> None:
    """Compress the linear layers of MODEL by truncated SVD and save the result as a .pt2 archive."""
    from dldebug.compress import compress_linear_layers
    from dldebug.compress.export import save_exported
    from dldebug.io import load_input, load_model

    if out.suffix.lower() != ".pt2":
        raise InputError(f"--out must end in .pt2 (a torch.export archive); got {out}.")
    loaded = load_model(model, weights=weights)
    if not isinstance(loaded, torch.nn.Module) or isinstance(loaded, torch.fx.GraphModule):
        raise InputError(f"{model} is not an nn.Module with nn.Linear layers (an .onnx file or an exported "
                         ".pt2 graph has none left to replace). Give the architecture as 'package.module:factory' "
                         "with --weights FILE.")
    calib_data = load_input(calib) if calib is not None else None
    example = load_input(example_input) if example_input is not None else None
    if example is None and calib_data is None:
        raise InputError("torch.export needs an example input: give --input SHAPE (e.g. 1x1x8x8) or FILE, "
                         "or --calib FILE.")
    result = compress_linear_layers(loaded, rank=rank, energy=energy, max_error=max_error,
                                    param_ratio=param_ratio, layers=layers or None, calib_data=calib_data)
    save_exported(result.model, example if example is not None else calib_data, out)  # type: ignore[arg-type]
    if not as_json:
        console.print(f"Compressed model written to {out} ({result.model_params_before:,} -> "
                      f"{result.model_params_after:,} parameters). Load it with dldebug.io.load_model('{out}').")
    emit(result.report, as_json=as_json, html=html, fail_on=fail_on)
