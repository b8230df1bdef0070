"""check_label_alignment on synthetic predictions: each verdict fires where it must and stays silent elsewhere."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dldebug import LabelAlignment, Report, check_label_alignment


def _model(labels: np.ndarray, mapping: np.ndarray, accuracy: float, outputs: int, seed: int = 0) -> np.ndarray:
    """Logits of a model right with probability ``accuracy`` at index mapping[label], else a random index."""
    rng = np.random.default_rng(seed)
    right = rng.random(len(labels)) < accuracy
    predicted = np.where(right, mapping[labels], rng.integers(0, outputs, len(labels)))
    logits = rng.normal(size=(len(labels), outputs)).astype(np.float32)
    logits[np.arange(len(labels)), predicted] += 10.0
    return logits


def _labels(k: int, per_class: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(k), per_class))


def test_permutation_is_recovered_with_accuracy_before_and_after() -> None:
    labels = _labels(20, 30)
    permutation = np.random.default_rng(1).permutation(20)
    logits = _model(labels, permutation, 0.7, 20)
    result = check_label_alignment(logits, labels)
    predicted = logits.argmax(1)
    assert isinstance(result, LabelAlignment) and not result
    assert result.mapping == {i: int(permutation[i]) for i in range(20)}
    assert result.accuracy == pytest.approx(float((predicted == labels).mean()))
    assert result.aligned_accuracy == pytest.approx(float((predicted == permutation[labels]).mean()))
    finding = result.report.get("labels.permuted")
    assert finding is not None and finding.lesson == 9 and finding.severity.value == "error"
    assert finding.evidence["moved_classes"] == int((permutation != np.arange(20)).sum())
    assert finding.evidence["p_value"] < 1e-10
    assert finding.evidence["aligned_accuracy"] == pytest.approx(result.aligned_accuracy, abs=1e-6)
    assert [f.check for f in result.report] == ["labels.permuted"]


def test_well_aligned_model_gives_no_finding() -> None:
    labels = _labels(10, 40)
    result = check_label_alignment(_model(labels, np.arange(10), 0.8, 10), labels)
    assert len(result.report) == 0 and result
    assert result.mapping == {i: i for i in range(10)}
    assert result.aligned_accuracy == result.accuracy


def test_offset_with_background_class_at_zero() -> None:
    labels = _labels(10, 40)
    result = check_label_alignment(_model(labels, np.arange(1, 11), 0.9, 11), labels)
    finding = result.report.get("labels.offset")
    assert finding is not None and finding.evidence["offset"] == 1
    assert [f.check for f in result.report] == ["labels.offset"]
    assert result.mapping == {i: i + 1 for i in range(10)}


def test_two_swapped_classes_are_named_as_partial() -> None:
    labels = _labels(10, 40)
    swap = np.arange(10)
    swap[[3, 7]] = [7, 3]
    result = check_label_alignment(_model(labels, swap, 0.9, 10), labels, dataset_classes=[f"c{i}" for i in
                                                                                               range(10)])
    finding = result.report.get("labels.partial")
    assert finding is not None
    assert finding.evidence["moves"] == ["c3 (3) <-> c7 (7)"]
    assert "c3 (3) <-> c7 (7)" in finding.message
    assert [f.check for f in result.report] == ["labels.partial"]


@pytest.mark.parametrize("seed", range(10))
def test_pure_noise_is_never_called_a_permutation(seed: int) -> None:
    labels = _labels(10, 45, seed)
    noise = np.random.default_rng(seed + 100).integers(0, 10, len(labels))
    result = check_label_alignment(noise, labels)
    assert not result.report.has("labels.permuted") and not result.report.has("labels.partial")
    assert not result.report.has("labels.offset")
    assert result.report.has("labels.inconclusive") and result
    assert result.mapping == {i: i for i in range(10)} and result.p_value > 1e-3


def test_biased_near_chance_model_is_not_called_a_permutation() -> None:
    # a near-chance model predicting mostly two classes, with a real but weak preference
    labels = _labels(10, 45)
    rng = np.random.default_rng(7)
    predicted = np.where(labels < 5, 8, 2)
    predicted = np.where(rng.random(len(labels)) < 0.3, rng.integers(0, 10, len(labels)), predicted)
    result = check_label_alignment(predicted, labels)
    assert result.report.filter(check="labels.") == (result.report.get("labels.inconclusive"),)


def test_inputs_as_torch_probabilities_and_indices_agree() -> None:
    labels = _labels(6, 30)
    logits = _model(labels, np.array([1, 0, 3, 2, 5, 4]), 0.9, 6)
    from_numpy = check_label_alignment(logits, labels)
    probabilities = torch.softmax(torch.from_numpy(logits), dim=1)
    from_torch = check_label_alignment(probabilities, torch.from_numpy(labels))
    from_indices = check_label_alignment(logits.argmax(1), labels, num_classes=6)
    for other in (from_torch, from_indices):
        assert other.mapping == from_numpy.mapping and other.accuracy == from_numpy.accuracy
        assert other.report == from_numpy.report


def test_report_holds_confusion_figure_and_mapping_table() -> None:
    labels = _labels(5, 20)
    logits = _model(labels, np.array([1, 0, 2, 3, 4]), 1.0, 5)
    result = check_label_alignment(logits, labels)
    figure = result.report.figure("labels.confusion")
    assert np.array_equal(np.array(figure.matrix), result.confusion)
    assert result.confusion.sum() == 100
    table = result.report.table("labels.mapping")
    assert table.column("model index") == [1, 0, 2, 3, 4]
    assert table.column("moved") == [True, True, False, False, False]
    assert table.column("hits mapped") == [20, 20, 20, 20, 20]
    assert Report.from_json(result.report.to_json()) == result.report


def test_big_confusion_figure_is_cut_to_a_readable_block() -> None:
    labels = _labels(300, 3)
    result = check_label_alignment(_model(labels, np.arange(300), 0.9, 300), labels)
    matrix = result.report.figure("labels.confusion").matrix
    assert matrix is not None and len(matrix) == 64 and len(matrix[0]) <= 128


def test_mapping_document_is_ready_to_use(tmp_path) -> None:
    labels = _labels(4, 25)
    permutation = np.array([2, 0, 3, 1])
    logits = _model(labels, permutation, 1.0, 4)
    names = ["ant", "bee", "cat", "dog"]
    result = check_label_alignment(logits, labels, dataset_classes=names)
    path = result.save_mapping(tmp_path / "out" / "mapping.json")
    document = json.loads(path.read_text())
    assert document["verdict"] == "labels.permuted"
    assert document["index_list"] == permutation.tolist()
    assert document["class_to_idx"] == {"ant": 2, "bee": 0, "cat": 3, "dog": 1}
    model_index = logits.argmax(1)
    assert all(document["index_list"][label] == index for label, index in zip(labels, model_index, strict=True))
    assert list(tmp_path.joinpath("out").iterdir()) == [path]  # atomic: no temp file left


def test_more_dataset_classes_than_outputs_leaves_labels_unmapped() -> None:
    labels = _labels(4, 20)
    logits = np.eye(3, dtype=np.float32)[np.where(labels < 3, labels, 0)]  # a 3-output model
    result = check_label_alignment(logits, labels, num_classes=4)
    assert 3 not in result.mapping and result.index_list[3] == -1


def test_weak_but_real_permuted_model_is_inconclusive_not_permuted() -> None:
    # 35% accurate under a permutation, but only 3 of 10 classes predicted consistently: too weak to claim
    labels = _labels(10, 45)
    rng = np.random.default_rng(4)
    permutation = np.roll(np.arange(10), 1)
    favoured = np.where(labels < 3, permutation[labels], rng.choice([0, 5], len(labels)))
    predicted = np.where(rng.random(len(labels)) < 0.8, favoured, rng.integers(0, 10, len(labels)))
    result = check_label_alignment(predicted, labels)
    finding = result.report.get("labels.inconclusive")
    assert [f.check for f in result.report] == ["labels.inconclusive"] and finding is not None
    assert finding.evidence["consistency"] < 0.5
    assert "too weak to tell" in finding.message
    assert result.mapping == {i: i for i in range(10)}
    assert result.best_mapping != result.mapping


def test_too_few_samples_is_inconclusive_not_silent() -> None:
    result = check_label_alignment(np.array([0, 1, 2]), np.array([0, 1, 2]))
    finding = result.report.get("labels.inconclusive")
    assert finding is not None and finding.severity.value == "info"
    assert finding.message.startswith("Accuracy 100.0% is not significantly above chance (")
    assert finding.message.endswith("on 3 samples: the check cannot tell whether the labels are aligned.")
