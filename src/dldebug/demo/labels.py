"""Demo scenario (lesson 9): the digits test set as an image folder whose class folders sort differently.

The folders are the spelled-out digit names ("zero", "one", ...), so a loader
that numbers them in sorted order ("eight" = 0, "five" = 1, ...) disagrees with
the order the CNN was trained with. The label check finds the permutation.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from dldebug.demo.context import DemoContext
from dldebug.demo.digits import load_digits_data
from dldebug.findings import Report, Table

__all__ = ["SPELLED", "digits_pixel_stats", "scenario", "write_digits_folder"]

SPELLED = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_MAX_PIXEL = 16.0  # sklearn's digits hold values 0..16


def digits_pixel_stats(*, seed: int = 0) -> tuple[float, float]:
    """(mean, std) in [0, 1] pixel units that reproduce ``load_digits_data``'s normalisation.

    Images written by :func:`write_digits_folder` and read back as pixels / 255,
    then normalised with these, match the tensors the digits CNN was trained on
    (up to 8-bit rounding).
    """
    raw = load_digits_data(seed=seed, normalise=False)
    return float(raw.x_train.mean()) / _MAX_PIXEL, float(raw.x_train.std()) / _MAX_PIXEL


def write_digits_folder(root: str | Path, *, names: tuple[str, ...] = SPELLED, split: str = "test",
                        seed: int = 0) -> Path:
    """Write a digits split as 8x8 grayscale PNGs into ``root/<names[digit]>/<index>.png``.

    Args:
        root: output folder (created).
        names: folder name of each digit 0..9.
        split: ``"test"`` or ``"train"`` of ``load_digits_data(seed=seed)``.

    Returns:
        ``root`` as a Path.
    """
    from PIL import Image

    raw = load_digits_data(seed=seed, normalise=False)
    images, digits = (raw.x_test, raw.y_test) if split == "test" else (raw.x_train, raw.y_train)
    pixels = np.round(images[:, 0].numpy() * (255.0 / _MAX_PIXEL)).astype(np.uint8)
    out = Path(root)
    for name in names:
        (out / name).mkdir(parents=True, exist_ok=True)
    for index, (image, digit) in enumerate(zip(pixels, digits.tolist(), strict=True)):
        Image.fromarray(image, mode="L").save(out / names[digit] / f"{index:04d}.png")
    return out


def scenario(ctx: DemoContext) -> Report:
    from dldebug.labels import check_label_alignment, predict_logits, scan_image_folder

    model, _ = ctx.baseline()
    mean, std = digits_pixel_stats()
    with tempfile.TemporaryDirectory(prefix="dldebug-labels-") as tmp:
        folder = scan_image_folder(write_digits_folder(Path(tmp) / "digits"))
        logits = predict_logits(model, folder.files, batch_size=512, grayscale=True, mean=mean, std=std)
    result = check_label_alignment(logits, folder.labels, dataset_classes=folder.classes, model_classes=SPELLED)
    true_digits = np.array([SPELLED.index(folder.classes[label]) for label in folder.labels])
    true_accuracy = float((logits.argmax(axis=1) == true_digits).mean())
    summary = Table(
        "labels.demo_accuracy", ("labels", "accuracy"),
        (("sorted folder order (as a loader numbers them)", round(result.accuracy, 4)),
         ("recovered mapping", round(result.aligned_accuracy, 4)),
         ("true digit labels", round(true_accuracy, 4))),
        caption=f"{len(folder.files)} test digits written as PNGs into folders {', '.join(folder.classes)}.",
    )
    report = result.report
    return Report(report.own_findings, title="Label alignment: class folders numbered in sorted order (lesson 9)",
                  tables=(summary, *report.tables), figures=report.figures,
                  meta={**report.meta, "true_accuracy": true_accuracy})
