"""``dldebug compress``: truncated-SVD compression of a model's linear layers, saved as a .pt2 archive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import typer

from dldebug.cli.common import (
    FAIL_ON_OPTION,
    HTML_OPTION,
    JSON_OPTION,
    WEIGHTS_OPTION,
    FailOn,
    console,
    emit,
    output_spec,
)
from dldebug.errors import FileFormatError, InputError

_TENSOR_SUFFIXES = (".npy", ".npz", ".pt", ".pth")


def load_calibration(text: str) -> Any:
    """``--calib``: real inputs from a file -- never a shape turned into random numbers.

    Random inputs would fit the factors to noise rather than to the data the model sees, so a shape
    is refused. Returns a tensor, or a dict of keyword tensors for an .npz of several arrays.

    Raises:
        InputError: ``text`` is a shape. FileFormatError: the file is missing or unreadable.
    """
    from dldebug.io import load_model_inputs, parse_shape

    head = text.rpartition(":")[0]
    if Path(text).exists() or (head and Path(head).exists()):
        return load_model_inputs(text)
    try:
        parse_shape(text)
    except InputError:
        raise FileFormatError("calibration file not found (--calib takes .npy, .npz, .pt or FILE:KEY).",
                              path=head if Path(head).suffix.lower() in _TENSOR_SUFFIXES else text) from None
    raise InputError(f"--calib takes a FILE of real inputs, not a shape; got {text!r}. Random numbers would "
                     "fit the factors to noise instead of to the data the model sees. Save typical inputs "
                     "with np.save('calib.npy', x) (or np.savez('calib.npz', input_ids=ids, "
                     "attention_mask=mask) for keyword inputs) and pass --calib calib.npy; give the export "
                     "shape with --input.")


def command(
    model: str = typer.Argument(..., help="The model: 'package.module:factory' (with --weights FILE)."),
    energy: float = typer.Option(None, "--energy", help="Keep this fraction of each layer's spectral "
                                 "energy, e.g. 0.95."),
    rank: int = typer.Option(None, "--rank", help="The same rank for every layer."),
    max_error: float = typer.Option(None, "--max-error", help="Per-layer relative output error budget on "
                                    "--calib data, e.g. 0.05."),
    param_ratio: float = typer.Option(None, "--param-ratio", help="Global budget: keep this fraction of the "
                                      "layers' parameters, e.g. 0.3."),
    calib: str = typer.Option(None, "--calib", help="Calibration inputs, a FILE of real data (.npy/.npz/.pt, "
                              "FILE:KEY; an .npz of several arrays gives keyword inputs such as input_ids and "
                              "attention_mask): enables output errors and the data-aware factorisation."),
    weights: Path = WEIGHTS_OPTION,
    example_input: str = typer.Option(None, "--input", help="Example input for torch.export: a shape such as "
                                      "1x1x8x8, FILE, FILE:KEY or an .npz of keyword inputs (default: --calib)."),
    output: str = typer.Option(None, "--output", help="The output tensor the .pt2 returns when the model returns "
                               "several (a ModelOutput): a name such as logits, or an index (default: logits, "
                               "else last_hidden_state, else the first tensor)."),
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
    from dldebug.io import load_model, load_model_inputs

    if out.suffix.lower() != ".pt2":
        raise InputError(f"--out must end in .pt2 (a torch.export archive); got {out}.")
    loaded = load_model(model, weights=weights)
    if not isinstance(loaded, torch.nn.Module) or isinstance(loaded, torch.fx.GraphModule):
        raise InputError(f"{model} is not an nn.Module with nn.Linear layers (an .onnx file or an exported "
                         ".pt2 graph has none left to replace). Give the architecture as 'package.module:factory' "
                         "with --weights FILE.")
    calib_data = load_calibration(calib) if calib is not None else None
    example = load_model_inputs(example_input) if example_input is not None else None
    if example is None and calib_data is None:
        raise InputError("torch.export needs an example input: give --input SHAPE (e.g. 1x1x8x8) or FILE, "
                         "or --calib FILE.")
    result = compress_linear_layers(loaded, rank=rank, energy=energy, max_error=max_error,
                                    param_ratio=param_ratio, layers=layers or None, calib_data=calib_data)
    save_exported(result.model, example if example is not None else calib_data, out, output=output_spec(output))
    if not as_json:
        console.print(f"Compressed model written to {out} ({result.model_params_before:,} -> "
                      f"{result.model_params_after:,} parameters). Load it with dldebug.io.load_model('{out}').")
    emit(result.report, as_json=as_json, html=html, fail_on=fail_on)
