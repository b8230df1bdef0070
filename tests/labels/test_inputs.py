"""Bad input to check_label_alignment: one clear InputError with pinned text."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from dldebug import InputError, check_label_alignment

LOGITS = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
LABELS = np.array([0, 1, 2, 0])


@pytest.mark.parametrize(("predictions", "labels", "kwargs", "message"), [
    (LOGITS, LABELS[:3], {}, "predictions has 4 rows but labels has 3; give one prediction per label."),
    (np.zeros((0, 3)), np.zeros(0, dtype=int), {},
     "predictions and labels are empty; give at least one prediction and its label."),
    (np.where(np.eye(3)[[0, 1, 2, 0]] == 1, np.nan, 0.0), LABELS, {},
     "predictions contain NaN in 4 row(s) (first: row 0); fix the model (or drop those rows) before checking "
     "labels."),
    (LOGITS, np.array([0, 1, 5, 0]), {"num_classes": 3},
     "labels must lie in [0, 3) (num_classes=3); got 5 at position 2. Pass num_classes (or dataset_classes) "
     "covering every label."),
    (LOGITS, np.array([0, -1, 2, 0]), {}, "labels must be non-negative class indices; got -1 at position 1."),
    (LOGITS, np.array([0, 1.5, 2, 0]), {},
     "labels must be whole class indices; got 1.5 at position 1. Pass integer indices (or 2-D logits for "
     "predictions)."),
    (LOGITS, np.array(["a", "b", "c", "a"]), {},
     "labels must be numeric; got an array of dtype <U1. Convert class names to indices first."),
    (LOGITS[:, :1], LABELS, {},
     "predictions have 1 column(s); the label check needs one score per class (at least 2 columns) or 1-D "
     "predicted indices."),
    (np.zeros((4, 3, 2)), LABELS, {},
     "predictions must be (N, classes) logits/probabilities or (N,) indices; got shape (4, 3, 2). Flatten extra "
     "dimensions first."),
    (LOGITS, LABELS, {"model_classes": ["a", "b"]},
     "model_classes has 2 names but predictions have 3 columns; give one name per model output."),
    (np.array([0, 1, 4, 0]), LABELS, {"model_classes": ["a", "b", "c"]},
     "predictions must lie in [0, 3) (len(model_classes)=3); got 4 at position 2."),
    (LOGITS, LABELS, {"num_classes": 4, "dataset_classes": ["a", "b", "c"]},
     "num_classes=4 but dataset_classes has 3 names; give one or make them agree."),
    (LOGITS, LABELS.reshape(2, 2), {},
     "labels must be a 1-D array of class indices; got shape (2, 2). For one-hot labels pass labels.argmax(1)."),
    (LOGITS, LABELS, {"alpha": 0.0}, "alpha must lie in (0, 1); got 0.0."),
    (LOGITS, LABELS, {"model_classes": "abc"}, "model_classes must be a list of class names, not one string."),
    (LOGITS, LABELS, {"dataset_classes": "abc"}, "dataset_classes must be a list of class names, not one string."),
    (LOGITS, LABELS, {"num_classes": 0}, "num_classes must be a positive integer; got 0."),
])
def test_bad_input_raises_one_clear_error(predictions, labels, kwargs, message) -> None:
    with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
        check_label_alignment(predictions, labels, **kwargs)


def test_nan_in_torch_half_logits_is_caught() -> None:
    logits = torch.zeros(4, 3, dtype=torch.float16)
    logits[2, 1] = float("nan")
    with pytest.raises(InputError, match=r"NaN in 1 row\(s\) \(first: row 2\)"):
        check_label_alignment(logits, torch.tensor([0, 1, 2, 0]))


def test_input_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="rows but labels"):
        check_label_alignment(LOGITS, LABELS[:2])
