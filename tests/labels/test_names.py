"""The name-level check: normalisation, order and name mismatches, and class-name files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dldebug import FileFormatError, check_label_alignment
from dldebug.labels import compare_class_names, normalise_class_name, read_class_names


@pytest.mark.parametrize(("raw", "normal"), [
    ("Ice_Cream", "ice cream"), ("ice-cream", "ice cream"), ("  ICE   cream ", "ice cream"),
    ("rock'n'roll", "rocknroll"), ("tench, Tinca tinca", "tench tinca tinca"), ("Straße", "strasse"),
    ("n01440764", "n01440764"),
])
def test_normalise_class_name(raw: str, normal: str) -> None:
    assert normalise_class_name(raw) == normal


def _predictions(index_list: list[int], outputs: int, per_class: int = 20) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(len(index_list)), per_class)
    return np.eye(outputs, dtype=np.float32)[np.array(index_list)[labels]], labels


def test_order_mismatch_gives_the_corrected_index_list() -> None:
    model = ["zero", "one", "two", "three"]
    folders = sorted(model)  # one, three, two, zero
    logits, labels = _predictions([1, 3, 2, 0], 4)
    result = check_label_alignment(logits, labels, dataset_classes=["One", "THREE", "two ", "zero"],
                                   model_classes=model)
    finding = result.report.get("labels.order_mismatch")
    assert finding is not None and finding.lesson == 9
    assert finding.evidence["corrected_index_list"] == [model.index(n) for n in folders] == [1, 3, 2, 0]
    assert not result.report.has("labels.name_mismatch")
    assert result.report.get("labels.permuted").evidence["names_agree"] == 1.0


def test_same_names_in_same_order_are_silent() -> None:
    logits, labels = _predictions([0, 1, 2], 3)
    result = check_label_alignment(logits, labels, dataset_classes=["a_b", "c-d", "E F"],
                                   model_classes=["a b", "c d", "e f"])
    assert len(result.report) == 0


def test_name_mismatch_lists_closest_matches() -> None:
    logits, labels = _predictions([1, 2, 3], 4)
    result = check_label_alignment(logits, labels, dataset_classes=["cat", "dogg", "bird"],
                                   model_classes=["background", "cat", "dog", "bird"])
    finding = result.report.get("labels.name_mismatch")
    assert finding is not None and finding.severity.value == "warning"
    assert finding.evidence["only_in_dataset"] == ["dogg"]
    assert finding.evidence["only_in_model"] == ["background", "dog"]
    assert finding.evidence["closest_matches"] == ["dogg ~ dog"]
    assert "closest: dogg ~ dog." in finding.message
    assert result.report.has("labels.order_mismatch")  # cat, bird sit one index later
    assert result.report.has("labels.offset")  # and the predictions say the same
    close = compare_class_names(["Tench fish"], ["tench_fish_", "goldfish"])
    assert close.index_list == (0,)
    near = compare_class_names(["goldfsh"], ["tench", "goldfish"])
    assert near.closest == {"goldfsh": ("goldfish",)}
    far = compare_class_names(["zebra"], ["tench", "goldfish"])
    assert far.closest == {"zebra": ()} and far.only_in_model == ("tench", "goldfish")


def test_duplicate_names_match_in_order() -> None:
    # ImageNet names "crane" twice (bird and machine)
    comparison = compare_class_names(["crane", "kite", "crane"], ["kite", "crane", "crane"])
    assert comparison.index_list == (1, 0, 2) and comparison.complete


def test_name_mapping_is_used_when_predictions_cannot_tell() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 10)
    noise = rng.integers(0, 4, len(labels))
    result = check_label_alignment(noise, labels, dataset_classes=["b", "a", "c", "d"],
                                   model_classes=["a", "b", "c", "d"])
    assert result.mapping == {0: 1, 1: 0, 2: 2, 3: 3}
    assert result.report.has("labels.order_mismatch") and not result.report.has("labels.permuted")


@pytest.mark.parametrize(("text", "names"), [
    ("zero\none\n\n two \n", ["zero", "one", "two"]),
    (json.dumps(["a", "b"]), ["a", "b"]),
    (json.dumps({"1": "b", "0": "a", "10": "k", **{str(i): str(i) for i in range(2, 10)}}),
     ["a", "b", *[str(i) for i in range(2, 10)], "k"]),
])
def test_read_class_names(tmp_path, text: str, names: list[str]) -> None:
    path = tmp_path / "classes.txt"
    path.write_text(text, encoding="utf-8")
    assert read_class_names(path) == names


@pytest.mark.parametrize(("text", "message"), [
    ("", "no class names found; write one name per line."),
    ("[1, 2", "invalid JSON (Expecting ',' delimiter at line 1)."),
    ('{"0": "a", "2": "c"}', "a JSON object must map every class index '0', '1', ... (no gaps) to a name."),
])
def test_bad_class_name_file(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "classes.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FileFormatError, match=f"{path}: " + message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace(".", r"\.")):
        read_class_names(path)


# ---- model_class_names: a Hugging Face config's id2label ------------------------------------------------


def _with_id2label(id2label: object) -> object:
    from types import SimpleNamespace

    return SimpleNamespace(config=SimpleNamespace(id2label=id2label))


@pytest.mark.parametrize(("id2label", "expected"), [
    ({0: "cat", 1: "dog"}, ["cat", "dog"]),
    ({"1": "dog", "0": "cat"}, ["cat", "dog"]),  # a JSON config: ids as strings, any order
    ({0: "LABEL_0", 1: "dog"}, ["LABEL_0", "dog"]),  # one real name: the list means something
    ({0: "LABEL_1", 1: "LABEL_0"}, ["LABEL_1", "LABEL_0"]),  # not the made-up order
])
def test_model_class_names_reads_id2label(id2label: object, expected: list[str]) -> None:
    from dldebug.labels import model_class_names

    assert model_class_names(_with_id2label(id2label)) == expected


@pytest.mark.parametrize("id2label", [
    {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"},  # what transformers makes up: says nothing
    {}, None, "cat,dog", {0: "cat", 2: "dog"}, {1: "cat", 2: "dog"}, {0: "cat", "zero": "dog"}, {0: "cat", 1: 3},
    {0: "cat", "0": "dog"},
])
def test_model_class_names_is_none_without_real_names(id2label: object) -> None:
    from dldebug.labels import model_class_names

    assert model_class_names(_with_id2label(id2label)) is None


def test_model_class_names_of_a_plain_module_is_none() -> None:
    import torch

    from dldebug.labels import model_class_names

    assert model_class_names(torch.nn.Linear(2, 3)) is None
