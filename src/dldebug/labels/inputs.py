"""Validate the label check's inputs: predictions, labels and class-name lists.

Every bad input becomes one :class:`~dldebug.errors.InputError` saying what is
wrong, what was received and how to fix it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from dldebug.arguments import integer, name_list
from dldebug.errors import InputError
from dldebug.model_io import OutputSpec, select_output

__all__ = ["MAX_CONFUSION_CELLS", "as_class_names", "as_labels", "as_predicted_indices", "resolve_sizes"]


def _as_array(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.is_floating_point() and tensor.dtype not in (torch.float32, torch.float64):
            tensor = tensor.float()  # bfloat16/float16 have no numpy twin
        return tensor.numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be a numeric array (numpy or torch); got {type(value).__name__} "
                         f"({exc}).") from None
    if array.dtype.kind not in "biuf":
        raise InputError(f"{what} must be numeric; got an array of dtype {array.dtype}. "
                         "Convert class names to indices first.")
    return array


def _integral(array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array) | (array != np.round(array))
        if bad.any():
            at = int(np.flatnonzero(bad)[0])
            raise InputError(f"{what} must be whole class indices; got {array[at].item()!r} at position {at}. "
                             "Pass integer indices (or 2-D logits for predictions).")
    result = array.astype(np.int64)
    if result.size and result.min() < 0:
        at = int(np.flatnonzero(result < 0)[0])
        raise InputError(f"{what} must be non-negative class indices; got {int(result[at])} at position {at}.")
    return result


def _structured(value: Any) -> bool:
    """A model's structured output (a ModelOutput, a dict, a dataclass), not an array-like."""
    return isinstance(value, Mapping) or (dataclasses.is_dataclass(value) and not isinstance(value, type))


def as_predicted_indices(predictions: Any, output: OutputSpec = None) -> tuple[np.ndarray, int | None]:
    """Predicted model indices, and the number of model outputs when logits were given.

    ``predictions`` may be what the model returned: a structured output (a Hugging Face
    ``ImageClassifierOutput``, a dict) is read with :func:`dldebug.model_io.select_output`
    (``logits`` by default, or ``output``); ``output`` also picks from a tuple.

    Example:
        >>> idx, outputs = as_predicted_indices(np.array([[0.1, 0.9], [2.0, -1.0]]))
        >>> idx.tolist(), outputs
        ([1, 0], 2)
        >>> as_predicted_indices({"logits": torch.tensor([[0.0, 1.0]])})[0].tolist()
        [1]
    """
    if output is not None or _structured(predictions):
        predictions = select_output(predictions, output, tool="check_label_alignment")
    array = _as_array(predictions, "predictions")
    if array.ndim == 1:
        return _integral(array, "predictions"), None
    if array.ndim != 2:
        raise InputError(f"predictions must be (N, classes) logits/probabilities or (N,) indices; got shape "
                         f"{tuple(array.shape)}. Flatten extra dimensions first.")
    if array.shape[1] < 2:
        raise InputError(f"predictions have {array.shape[1]} column(s); the label check needs one score per "
                         "class (at least 2 columns) or 1-D predicted indices.")
    if array.dtype.kind == "f":
        nan_rows = np.flatnonzero(np.isnan(array).any(axis=1))
        if len(nan_rows):
            raise InputError(f"predictions contain NaN in {len(nan_rows)} row(s) (first: row {int(nan_rows[0])}); "
                             "fix the model (or drop those rows) before checking labels.")
    return array.argmax(axis=1).astype(np.int64), int(array.shape[1])


def as_labels(labels: Any) -> np.ndarray:
    """Data-set labels as a 1-D int64 array of non-negative class indices."""
    array = _as_array(labels, "labels")
    if array.ndim != 1:
        raise InputError(f"labels must be a 1-D array of class indices; got shape {tuple(array.shape)}. "
                         "For one-hot labels pass labels.argmax(1).")
    return _integral(array, "labels")


def as_class_names(names: Any, name: str) -> tuple[str, ...] | None:
    """``dataset_classes`` / ``model_classes`` as a tuple of str (None stays None).

    Raises:
        InputError: one string, a mapping, a scalar, or an entry that is not a name.
    """
    return None if names is None else name_list(names, name)


def resolve_sizes(predicted: np.ndarray, outputs: int | None, labels: np.ndarray, num_classes: int | None,
                  dataset_classes: Sequence[str] | None,
                  model_classes: Sequence[str] | None) -> tuple[int, int]:
    """(data-set classes, model outputs), checked against every input that names them and against memory.

    Raises:
        InputError: lengths that disagree, values out of range, or sizes the check cannot hold
            (see :data:`MAX_CONFUSION_CELLS`).
    """
    if len(predicted) != len(labels):
        raise InputError(f"predictions has {len(predicted)} rows but labels has {len(labels)}; give one "
                         "prediction per label.")
    if len(labels) == 0:
        raise InputError("predictions and labels are empty; give at least one prediction and its label.")
    dataset_names = as_class_names(dataset_classes, "dataset_classes")
    model_names = as_class_names(model_classes, "model_classes")
    k = _dataset_size(labels, num_classes, dataset_names)
    if outputs is not None:
        if model_names is not None and len(model_names) != outputs:
            raise InputError(f"model_classes has {len(model_names)} names but predictions have {outputs} "
                             "columns; give one name per model output.")
        m = known = outputs
    elif model_names is not None:
        m = len(model_names)
        if int(predicted.max()) >= m:
            at = int(np.flatnonzero(predicted >= m)[0])
            raise InputError(f"predictions must lie in [0, {m}) (len(model_classes)={m}); got "
                             f"{int(predicted[at])} at position {at}.")
        known = m
    else:
        m, known = max(int(predicted.max()) + 1, k), None
    _check_size(k, m, labels, predicted, num_classes, known)
    return k, m


# The check holds a few dense (classes x outputs) matrices at once (int64 counts, float64 assignment
# weights): 5e7 cells, about 7,000 x 7,000 classes, peak at ~2 GiB and ~10 s.
MAX_CONFUSION_CELLS = 50_000_000
_EMPTY_CLASS_FACTOR = 10  # num_classes may exceed what the data show by this factor (or reach _EMPTY_CLASS_FLOOR)
_EMPTY_CLASS_FLOOR = 1000


def _check_size(k: int, m: int, labels: np.ndarray, predicted: np.ndarray, num_classes: int | None,
                outputs: int | None) -> None:
    """Refuse sizes far beyond what the data show, before any (k x m) matrix is allocated.

    ``outputs`` is the model's number of outputs where known (logit columns, ``len(model_classes)``).
    """
    top_label, top_predicted = int(labels.max()), int(predicted.max())
    shown = max(top_label, top_predicted if outputs is None else outputs - 1) + 1
    allowed = max(_EMPTY_CLASS_FACTOR * shown, _EMPTY_CLASS_FLOOR)
    if num_classes is not None and k > allowed:
        model = (f"the predicted indices {top_predicted:,}" if outputs is None
                 else f"the model has {outputs:,} outputs")
        raise InputError(f"num_classes={k:,} is far beyond what the data show (labels reach {top_label:,}, "
                         f"{model}): at least {k - shown:,} classes would have no sample. Pass the data set's "
                         f"real class count (at most {allowed:,} for these data), or leave num_classes out.")
    cells = k * m
    if cells <= MAX_CONFUSION_CELLS:
        return
    if outputs is None and top_predicted + 1 == m and top_predicted > top_label:
        cause = (f"the predicted indices reach {top_predicted:,}: if they are not class indices in [0, classes), "
                 "pass (N, classes) logits instead")
    elif top_label + 1 == k:
        cause = (f"the labels reach {top_label:,} ({len(np.unique(labels)):,} distinct values in {len(labels):,} "
                 "samples): if they are ids rather than class indices, renumber them with "
                 "np.unique(labels, return_inverse=True)")
    else:
        cause = "compare a subset of the classes (the rows and columns of the classes you care about)"
    raise InputError(f"the label check needs a {k:,} x {m:,} confusion matrix ({cells:,} cells, "
                     f"{cells * 8 / 2**30:.1f} GiB per copy), beyond its limit of {MAX_CONFUSION_CELLS:,} cells "
                     f"(about 7,000 x 7,000 classes); {cause}.")


def _dataset_size(labels: np.ndarray, num_classes: Any, dataset_classes: tuple[str, ...] | None) -> int:
    if num_classes is not None:
        num_classes = integer(num_classes, "num_classes must be a positive integer")
    if dataset_classes is not None:
        if num_classes is not None and num_classes != len(dataset_classes):
            raise InputError(f"num_classes={num_classes} but dataset_classes has {len(dataset_classes)} names; "
                             "give one or make them agree.")
        num_classes = len(dataset_classes)
    if num_classes is None:
        return int(labels.max()) + 1
    k = int(num_classes)
    if int(labels.max()) >= k:
        at = int(np.flatnonzero(labels >= k)[0])
        raise InputError(f"labels must lie in [0, {k}) (num_classes={k}); got {int(labels[at])} at position {at}. "
                         "Pass num_classes (or dataset_classes) covering every label.")
    return k
