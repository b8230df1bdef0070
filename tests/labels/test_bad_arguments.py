"""Wrong-type, out-of-range and oversized arguments of the label check: one clear InputError each.

Regression tests for docs/reliability.md, crashes C4 (alpha), C5 (class-name lists) and C12 (a huge
num_classes), and for the sweep of the other arguments (seed, num_classes, folder_classes' root,
load_images' preprocessing). Legitimate large inputs (1,000 classes x 50,000 predictions) still work.
"""

from __future__ import annotations

import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from dldebug import InputError, check_label_alignment, folder_classes
from dldebug.labels import load_images, scan_image_folder
from dldebug.labels.inputs import MAX_CONFUSION_CELLS

LABELS = np.array([0, 1, 1, 0] * 5)
LOGITS = np.eye(2)[LABELS]


@pytest.mark.parametrize(("kwargs", "message"), [
    # C4: alpha that is not a number
    ({"alpha": None}, "alpha must lie in (0, 1); got None."),
    ({"alpha": []}, "alpha must lie in (0, 1); got [] (a list)."),
    ({"alpha": "x"}, "alpha must lie in (0, 1); got 'x' (a str)."),
    ({"alpha": True}, "alpha must lie in (0, 1); got True (a bool)."),
    ({"alpha": float("nan")}, "alpha must lie in (0, 1); got nan."),
    ({"alpha": torch.tensor(0.01)}, "alpha must lie in (0, 1); got a Tensor of shape () (a number is expected: "
                                    "use .item())."),
    ({"alpha": torch.tensor([0.1, 0.2])}, "alpha must lie in (0, 1); got a Tensor of shape (2,)."),
    # C5: class-name lists that are not lists of names
    ({"dataset_classes": 3}, "dataset_classes must be a list of class names; got 3."),
    ({"model_classes": True}, "model_classes must be a list of class names; got True (a bool)."),
    ({"model_classes": 2.5}, "model_classes must be a list of class names; got 2.5."),
    ({"dataset_classes": np.zeros((2, 2))}, "dataset_classes must be a list of class names; got an ndarray of "
                                            "shape (2, 2)."),
    ({"dataset_classes": ["cat", None]}, "dataset_classes[1] must be a name (a str); got None. Pass the class "
                                         "names as strings."),
    ({"model_classes": {0: "cat", 1: "dog"}}, "model_classes must be a list of class names in index order; got a "
                                              "mapping. For an id -> name dict (a Hugging Face config.id2label) "
                                              "pass [id2label[i] for i in range(len(id2label))]."),
    ({"dataset_classes": "ab"}, "dataset_classes must be a list of class names, not one string."),
    # the rest of the sweep
    ({"num_classes": True}, "num_classes must be a positive integer; got True (a bool)."),
    ({"num_classes": 2.0}, "num_classes must be a positive integer; got 2.0."),
    ({"num_classes": "2"}, "num_classes must be a positive integer; got '2' (a str)."),
    ({"seed": -1}, "seed must be a non-negative integer; got -1."),
    ({"seed": 0.5}, "seed must be a non-negative integer; got 0.5."),
    ({"seed": None}, "seed must be a non-negative integer; got None."),
])
def test_bad_arguments_raise_one_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
        check_label_alignment(LOGITS, LABELS, **kwargs)


@pytest.mark.parametrize(("names", "expected"), [
    (np.array(["a", "b"]), ("a", "b")),
    (range(2), ("0", "1")),
    (("a", "b"), ("a", "b")),
    ([np.str_("a"), "b"], ("a", "b")),
])
def test_name_lists_in_other_containers_are_accepted(names: object, expected: tuple) -> None:
    result = check_label_alignment(LOGITS, LABELS, dataset_classes=names, model_classes=names)
    assert result.dataset_classes == expected and result.model_classes == expected
    assert result.to_dict()["dataset_classes"] == list(expected)


def test_numpy_integers_and_floats_are_numbers() -> None:
    result = check_label_alignment(LOGITS, LABELS, num_classes=np.int64(2), alpha=np.float32(0.01),
                                   seed=np.int64(3))
    assert result.accuracy == 1.0 and result


@pytest.mark.parametrize("num_classes", [2**40, 10**9, np.int64(2**40), 10**7])
def test_huge_num_classes_is_refused_before_any_allocation(num_classes: int) -> None:
    # C12: 2**40 asked numpy for 16 TiB, 10**9 for 16 GB (the OOM killer); now nothing big is allocated.
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as info:
            check_label_alignment(LOGITS, LABELS, num_classes=num_classes)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20
    assert str(info.value) == (
        f"num_classes={int(num_classes):,} is far beyond what the data show (labels reach 1, the model has 2 "
        f"outputs): at least {int(num_classes) - 2:,} classes would have no sample. Pass the data set's real "
        "class count (at most 1,000 for these data), or leave num_classes out.")


def test_num_classes_with_empty_classes_within_reach_works() -> None:
    # 1,000 classes, a sample that only shows two of them: a legitimate subset evaluation.
    result = check_label_alignment(LOGITS, LABELS, num_classes=1000)
    assert result.confusion.shape == (1000, 2) and result.accuracy == 1.0
    with pytest.raises(InputError, match="num_classes=1,001 is far beyond"):
        check_label_alignment(LOGITS, LABELS, num_classes=1001)


@pytest.mark.parametrize(("predictions", "labels", "message"), [
    (np.array([0, 1]), np.array([10**7, 1]),
     "the label check needs a 10,000,001 x 10,000,001 confusion matrix (100,000,020,000,001 cells, 745058.2 GiB "
     "per copy), beyond its limit of 50,000,000 cells (about 7,000 x 7,000 classes); the labels reach 10,000,000 "
     "(2 distinct values in 2 samples): if they are ids rather than class indices, renumber them with "
     "np.unique(labels, return_inverse=True)."),
    (np.array([2**40, 0]), np.array([0, 1]),
     "the label check needs a 2 x 1,099,511,627,777 confusion matrix (2,199,023,255,554 cells, 16384.0 GiB per "
     "copy), beyond its limit of 50,000,000 cells (about 7,000 x 7,000 classes); the predicted indices reach "
     "1,099,511,627,776: if they are not class indices in [0, classes), pass (N, classes) logits instead."),
    (np.array([0, 1]), np.array([2**40, 1]), None),  # was OverflowError in the flat index
])
def test_label_or_index_values_beyond_memory_are_refused(predictions: np.ndarray, labels: np.ndarray,
                                                         message: str | None) -> None:
    with pytest.raises(InputError) as info:
        check_label_alignment(predictions, labels)
    if message is not None:
        assert str(info.value) == message
    assert f"{MAX_CONFUSION_CELLS:,} cells" in str(info.value)


def test_thousand_classes_fifty_thousand_predictions_still_work() -> None:
    # The legitimate large case: an ImageNet-sized model, 50,000 predictions, classes 3 and 7 swapped.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 1000, 50_000)
    permutation = np.arange(1000)
    permutation[[3, 7]] = [7, 3]
    right = rng.random(50_000) < 0.8
    predicted = np.where(right, permutation[labels], rng.integers(0, 1000, 50_000))
    result = check_label_alignment(predicted, labels, num_classes=1000)
    assert result.report.has("labels.partial")
    assert result.mapping == {label: int(permutation[label]) for label in range(1000)}  # oracle: the swap
    assert result.accuracy == pytest.approx(float(np.mean(predicted == labels)))


def test_thousand_class_logits_work() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 1000, 5000)
    logits = rng.normal(size=(5000, 1000)).astype(np.float32)
    logits[np.arange(5000), labels] += 6.0
    result = check_label_alignment(torch.from_numpy(logits), labels)
    assert result and result.confusion.shape == (1000, 1000)
    assert result.accuracy == pytest.approx(float(np.mean(logits.argmax(1) == labels)))


@pytest.mark.parametrize(("root", "message"), [
    (None, "root must be the data-set folder, a str or pathlib.Path; got None."),
    (3, "root must be the data-set folder, a str or pathlib.Path; got 3."),
    (b"data", "root must be the data-set folder, a str or pathlib.Path; got b'data' (a bytes)."),
    (["data"], "root must be the data-set folder, a str or pathlib.Path; got ['data'] (a list)."),
    ("", "root is an empty path; give the data-set folder (one sub-folder per class)."),
    ("  ", "root is an empty path; give the data-set folder (one sub-folder per class)."),
])
def test_folder_classes_refuses_a_root_that_is_not_a_path(root: object, message: str) -> None:
    for function in (folder_classes, scan_image_folder):
        with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
            function(root)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mean": "x"}, "mean must be a number or one number per channel; got 'x' (a str)."),
    ({"std": [float("nan")]}, "std must be finite numbers, one per channel (or one for all); got [nan] (a list)."),
    ({"mean": [[0.5]]}, "mean must be finite numbers, one per channel (or one for all); got [[0.5]] (a list)."),
    ({"size": 224}, "size must be (height, width); got 224."),
    ({"size": (0, 4)}, "size must be positive (height, width) integers; got 0."),
    ({"size": (4.0, 4)}, "size must be positive (height, width) integers; got 4.0."),
    ({"grayscale": "yes"}, "grayscale must be True or False; got 'yes' (a str)."),
])
def test_load_images_bad_preprocessing(tmp_path: Path, kwargs: dict, message: str) -> None:
    from PIL import Image

    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8), mode="L").save(path)
    with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
        load_images([path], **kwargs)
    with pytest.raises(InputError, match="no image files given"):
        load_images([])


def test_the_model_class_list_counts_as_what_the_data_show() -> None:
    # 1-D predictions of a 2,000-class model checked on two classes: its name list says 2,000 outputs.
    names = [f"class {i}" for i in range(2000)]
    result = check_label_alignment(LABELS, LABELS, num_classes=2000, dataset_classes=names, model_classes=names)
    assert result.confusion.shape == (2000, 2000) and result.accuracy == 1.0
