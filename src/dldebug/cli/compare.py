"""``dldebug compare A B``: layer-by-layer diff of two models, naming the first divergent layer."""

from __future__ import annotations

from pathlib import Path

import typer

from dldebug.cli.common import FAIL_ON_OPTION, HTML_OPTION, JSON_OPTION, JSON_OUT_OPTION, FailOn, console, emit
from dldebug.errors import InputError


def _parse_mapping(pairs: list[str] | None) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in pairs or []:
        a_name, sep, b_name = item.partition("=")
        if not sep or not a_name or not b_name:
            raise InputError(f"--map expects A_LAYER=B_LAYER, e.g. --map conv1=features.0; got {item!r}.")
        mapping[a_name] = b_name
    return mapping


def command(
    model_a: str = typer.Argument(..., help="Reference model: module:factory (PyTorch, tf_keras or Keras 3), .pt2, "
                                  ".onnx, .keras, .h5 or a SavedModel folder."),
    model_b: str = typer.Argument(..., help="Model to check, same formats."),
    input_: str = typer.Option("ones", "--input", help="'ones', 'random', or a .npy/.npz/.pt tensor file "
                               "(FILE:KEY picks one array; an .npz of several arrays gives named inputs, e.g. "
                               "input_ids and attention_mask, dtypes kept)."),
    shape: str = typer.Option(None, "--shape", help="Input shape for ones/random, e.g. 1x3x32x32 (needed when "
                              "both models are PyTorch)."),
    shadow: bool = typer.Option(False, "--shadow", help="Feed each layer of B the input A's layer received, "
                                "isolating the layer that introduces an error."),
    rtol: float = typer.Option(1e-4, "--rtol", help="Tolerance relative to each layer's largest |output|."),
    atol: float = typer.Option(1e-5, "--atol", help="Absolute tolerance."),
    mapping: list[str] = typer.Option(None, "--map", help="Pair layers by name: A_LAYER=B_LAYER (repeatable)."),
    weights_a: Path = typer.Option(None, "--weights-a", help="State dict for a module:factory model A."),
    weights_b: Path = typer.Option(None, "--weights-b", help="State dict for a module:factory model B."),
    as_json: bool = JSON_OPTION,
    html: Path = HTML_OPTION,
    json_out: Path = JSON_OUT_OPTION,
    fail_on: FailOn = FAIL_ON_OPTION,
) -> None:
    """Compare two models layer by layer (PyTorch, ONNX, Keras) and explain the first divergence."""
    from dldebug.compare import compare_models, load_compare_model
    from dldebug.io import load_model_inputs, parse_shape

    a = load_compare_model(model_a, weights=weights_a)
    b = load_compare_model(model_b, weights=weights_b)
    inputs: object = parse_shape(shape) if shape else None
    kind = "ones"
    if input_ in ("ones", "random"):
        kind = input_
    else:
        if shape:
            raise InputError("--shape applies to --input ones/random; a tensor file carries its own shape.")
        if not Path(input_).exists() and _is_shape(input_):
            raise InputError(f"--input takes 'ones', 'random' or a tensor file; got {input_!r}, which looks like a "
                             f"shape: use --input ones --shape {input_}.")
        inputs = load_model_inputs(input_)
    comparison = compare_models(a, b, inputs, input_kind=kind, rtol=rtol, atol=atol,
                                mode="shadow" if shadow else "propagate", mapping=_parse_mapping(mapping))
    # the terminal gets a table that fits it; --json, --html and --json-out keep every column
    emit(comparison.report, as_json=as_json, html=html, json_out=json_out, fail_on=fail_on,
         on_console=None if as_json else comparison.report_for_width(console.width))


def _is_shape(text: str) -> bool:
    from dldebug.io import parse_shape

    try:
        parse_shape(text)
    except InputError:
        return False
    return True
