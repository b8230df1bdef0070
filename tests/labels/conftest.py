"""Shared fixtures of the label-alignment tests: the digits test set as a spelled-out image folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from dldebug.demo.labels import SPELLED, digits_pixel_stats, write_digits_folder
from dldebug.labels import ImageFolder, predict_logits, scan_image_folder


@dataclass(frozen=True)
class FolderRun:
    """The trained CNN's logits on the PNG folder, with each image's true digit."""

    folder: ImageFolder
    logits: np.ndarray
    digits: np.ndarray  # true digit of each image (the model's training index)
    mean: float
    std: float


@pytest.fixture(scope="session")
def digit_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """449 test digits as 8x8 grayscale PNGs in folders "zero" ... "nine" (sorted: eight, five, four, ...)."""
    return write_digits_folder(tmp_path_factory.mktemp("labels") / "digits")


@pytest.fixture(scope="session")
def folder_run(trained_digits, digit_folder: Path) -> FolderRun:
    model, _ = trained_digits
    mean, std = digits_pixel_stats()
    folder = scan_image_folder(digit_folder)
    logits = predict_logits(model, folder.files, grayscale=True, mean=mean, std=std)
    digits = np.array([SPELLED.index(folder.classes[label]) for label in folder.labels])
    return FolderRun(folder, logits, digits, mean, std)
