"""Lesson 4's demo scenario, trained for real: the suggested cut transfers, the task head does not."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dldebug.checks.transfer import feature_extractor
from dldebug.demo.context import DemoContext
from dldebug.demo.digits import DigitsCNN, DigitsData
from dldebug.demo.transfer import NEW_CLASSES, PRETRAIN_CLASSES, class_split, scenario, train_head


def test_class_split_keeps_only_those_digits_and_relabels_them(digits: DigitsData) -> None:
    split = class_split(digits, NEW_CLASSES)
    expected_train = int(torch.isin(digits.y_train, torch.tensor(NEW_CLASSES)).sum())
    assert len(split.y_train) == expected_train and set(split.y_train.tolist()) == {0, 1, 2, 3, 4}
    originals = digits.x_train[torch.isin(digits.y_train, torch.tensor(NEW_CLASSES))]
    assert torch.equal(split.x_train, originals)  # the images themselves, in their order
    assert len(split.y_test) + len(class_split(digits, PRETRAIN_CLASSES).y_test) == len(digits.y_test)


def test_train_head_leaves_the_pretrained_model_unchanged(digits: DigitsData) -> None:
    torch.manual_seed(0)
    model = DigitsCNN(num_classes=5).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_head(model, "classifier.1", class_split(digits, NEW_CLASSES), steps=20)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result.features == 64 and len(result.accuracy) == 2 and result.steps == (10, 20)
    features = feature_extractor(model, "classifier.1")(digits.x_test[:3])
    assert features.shape == (3, 64)  # what the head was trained on


def test_the_suggested_cut_beats_the_task_head_on_new_classes(digits: DigitsData, tmp_path: Path) -> None:
    report = scenario(DemoContext(out_dir=tmp_path, data=digits, quick=True))
    cuts = {r["cut after"]: r for r in report.table("transfer.cuts").records()}
    assert report.meta["suggested_cut"] == "classifier.1" and report.meta["wrong_cut"] == "classifier.3"
    right, wrong = cuts["classifier.1"]["held-out accuracy"], cuts["classifier.3"]["held-out accuracy"]
    assert right > 0.9 and wrong < right - 0.1  # five old-task logits cannot separate the digits 5-9
    assert cuts["classifier.3"]["features"] == 5 and cuts["classifier.1"]["features"] == 64
    finding = report.get("transfer.wrong_cut")
    assert finding is not None and finding.severity.value == "warning" and finding.lesson == 4
    assert finding.evidence["suggested_cut_accuracy"] == report.meta["right_cut_accuracy"]
    assert report.meta["right_cut_accuracy"] == pytest.approx(right, abs=1e-4)
    assert report.has("transfer.head") and report.lessons == (4,)
    curves = {s.label.split()[0]: s.y for s in report.figure("transfer.head_accuracy").series}
    assert curves["classifier.1"][-1] == pytest.approx(right, abs=1e-4)
    assert curves["classifier.3"][-1] == pytest.approx(wrong, abs=1e-4)
