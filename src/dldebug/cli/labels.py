"""``dldebug labels``: check a pretrained model's class order against an image-folder data set (lesson 9)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dldebug.cli.common import (
    FAIL_ON_OPTION,
    HTML_OPTION,
    JSON_OPTION,
    WEIGHTS_OPTION,
    FailOn,
    console,
    emit,
    err_console,
)
from dldebug.errors import InputError


def _floats(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--{what} takes numbers separated by commas, e.g. 0.485,0.456,0.406; got {text!r}.") from None


def command(
    model: str = typer.Argument(..., help="'package.module:factory', a .pt2 archive or an .onnx file."),
    data_dir: Path = typer.Argument(..., help="Image-folder data set: one sub-folder of images per class."),
    model_classes: Path = typer.Option(None, "--model-classes", help="The model's class names in output order: "
                                       "one per line, or a JSON list (default: a Hugging Face model's "
                                       "config.id2label, where it holds real names).", dir_okay=False),
    weights: Path = WEIGHTS_OPTION,
    out: Path = typer.Option(None, "--out", help="Write the label mapping as JSON here (atomically).",
                             dir_okay=False),
    size: str = typer.Option(None, "--size", help="Resize every image to HxW, e.g. 224x224 (default: keep; "
                             "all images must then share one size)."),
    grayscale: bool = typer.Option(False, "--grayscale/--rgb", help="Read images as 1-channel grayscale "
                                   "(default: 3-channel RGB)."),
    mean: str = typer.Option(None, "--mean", help="Per-channel mean subtracted after scaling pixels to [0, 1], "
                             "e.g. 0.485,0.456,0.406 (default 0)."),
    std: str = typer.Option(None, "--std", help="Per-channel std divided after the mean, e.g. 0.229,0.224,0.225 "
                            "(default 1)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per forward pass."),
    output: str = typer.Option(None, "--output", help="The model output holding the logits when it returns "
                               "several: a name such as logits, or an index (default: logits, else the first)."),
    as_json: bool = JSON_OPTION,
    html: Path = HTML_OPTION,
    fail_on: FailOn = FAIL_ON_OPTION,
) -> None:
    """Detect permuted, shifted or renamed class indices and recover the mapping."""
    from dldebug.cli.common import output_spec
    from dldebug.io import load_model, parse_shape
    from dldebug.labels import (
        check_label_alignment,
        model_class_names,
        predict_logits,
        read_class_names,
        scan_image_folder,
    )

    shape = None if size is None else parse_shape(size)
    if shape is not None and len(shape) != 2:
        raise InputError(f"--size takes HxW (two numbers), e.g. 224x224; got {size!r}.")
    names = None if model_classes is None else read_class_names(model_classes)
    folder = scan_image_folder(data_dir)
    loaded = load_model(model, weights=weights)
    if names is None:
        names = model_class_names(loaded)
        if names is not None:
            err_console.print(f"Model class names: the model's config.id2label ({len(names)} names; "
                              "--model-classes overrides).")
    preprocess = {"size": shape, "grayscale": grayscale, "mean": _floats(mean, "mean"), "std": _floats(std, "std")}
    with Progress(TextColumn("[bold]predicting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task("predict", total=len(folder.files))
        logits = predict_logits(loaded, folder.files, batch_size=batch_size, output=output_spec(output),
                                progress=lambda done, _total: bar.update(task, completed=done), **preprocess)
    result = check_label_alignment(logits, folder.labels, dataset_classes=folder.classes, model_classes=names)
    if out is not None:
        path = result.save_mapping(out)
        if not as_json:
            console.print(f"Label mapping written to {path}")
    emit(result.report, as_json=as_json, html=html, fail_on=fail_on)
