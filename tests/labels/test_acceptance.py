"""Real acceptance (lesson 9): the digits CNN trained for real, its test digits written as PNG folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dldebug import check_label_alignment
from dldebug.demo.digits import DigitsCNN
from dldebug.demo.labels import SPELLED

pytestmark = pytest.mark.slow


def test_spelled_out_folders_permutation_is_recovered(folder_run) -> None:
    folder, logits = folder_run.folder, folder_run.logits
    assert folder.classes == tuple(sorted(SPELLED)) != SPELLED  # "eight" is label 0 for the loader
    result = check_label_alignment(logits, folder.labels, dataset_classes=folder.classes)
    true_accuracy = float((logits.argmax(1) == folder_run.digits).mean())  # computed directly
    assert true_accuracy > 0.9
    assert result.aligned_accuracy == pytest.approx(true_accuracy, abs=1e-12)
    assert result.accuracy < 0.2
    assert result.mapping == {label: SPELLED.index(name) for label, name in enumerate(folder.classes)}
    finding = result.report.get("labels.permuted")
    assert finding is not None and finding.evidence["moved_classes"] == 9  # "six" sorts to index 6
    assert finding.evidence["p_value"] < 1e-50
    assert "sorted" in (finding.fix or "")


def test_name_level_check_agrees_with_the_predictions(folder_run) -> None:
    folder = folder_run.folder
    result = check_label_alignment(folder_run.logits, folder.labels, dataset_classes=folder.classes,
                                   model_classes=SPELLED)
    order = result.report.get("labels.order_mismatch")
    assert order is not None
    assert order.evidence["corrected_index_list"] == result.index_list == [SPELLED.index(n) for n in folder.classes]
    assert result.report.get("labels.permuted").evidence["names_agree"] == 1.0


def test_aligned_labels_are_silent(folder_run) -> None:
    result = check_label_alignment(folder_run.logits, folder_run.digits, dataset_classes=SPELLED,
                                   model_classes=SPELLED)
    assert len(result.report) == 0
    assert result.accuracy == result.aligned_accuracy == pytest.approx(float((folder_run.logits.argmax(1) ==
                                                                              folder_run.digits).mean()))


class WithBackground(nn.Module):
    """The trained CNN with an extra 'background' output at index 0 (never the largest), like 1001-class models."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x)
        return torch.cat([logits.min(dim=1, keepdim=True).values - 1.0, logits], dim=1)


def test_background_class_gives_an_offset(trained_digits, digits) -> None:
    model, _ = trained_digits
    with torch.no_grad():
        logits = WithBackground(model).eval()(digits.x_test)
    assert logits.shape[1] == 11
    result = check_label_alignment(logits, digits.y_test)
    finding = result.report.get("labels.offset")
    assert finding is not None and finding.evidence["offset"] == 1
    assert [f.check for f in result.report] == ["labels.offset"]
    assert result.mapping == {d: d + 1 for d in range(10)}
    true_accuracy = float((logits[:, 1:].argmax(1) == digits.y_test).double().mean())
    assert result.aligned_accuracy == pytest.approx(true_accuracy, abs=1e-12)


def test_two_swapped_classes_are_partial(folder_run) -> None:
    labels = folder_run.digits.copy()
    three, eight = labels == 3, labels == 8
    labels[three], labels[eight] = 8, 3
    result = check_label_alignment(folder_run.logits, labels, dataset_classes=SPELLED)
    finding = result.report.get("labels.partial")
    assert finding is not None and [f.check for f in result.report] == ["labels.partial"]
    assert finding.evidence["moves"] == ["three (3) <-> eight (8)"]
    assert "three (3) <-> eight (8)" in finding.message


@pytest.mark.parametrize("seed", range(4))
def test_untrained_near_chance_model_is_never_called_permuted(digits, seed: int) -> None:
    torch.manual_seed(seed)
    random_model = DigitsCNN().eval()
    with torch.no_grad():
        logits = random_model(digits.x_test).numpy()
    sorted_label = np.array([sorted(SPELLED).index(name) for name in SPELLED])  # digit -> loader's label
    for labels in (digits.y_test.numpy(), sorted_label[digits.y_test.numpy()]):
        result = check_label_alignment(logits, labels)
        assert [f.check for f in result.report] == ["labels.inconclusive"]
        assert result.mapping == {i: i for i in range(10)}


def test_demo_scenario_on_the_trained_baseline(trained_digits, digits, tmp_path) -> None:
    from dldebug.demo.context import DemoContext
    from dldebug.demo.labels import scenario

    ctx = DemoContext(out_dir=tmp_path, data=digits, _baseline=trained_digits)
    section = scenario(ctx)
    assert [f.check for f in section.findings] == ["labels.permuted", "labels.order_mismatch"]
    accuracy = dict(section.table("labels.demo_accuracy").rows)
    assert accuracy["recovered mapping"] == accuracy["true digit labels"] > 0.9
    assert accuracy["sorted folder order (as a loader numbers them)"] < 0.2
    assert section.figure("labels.confusion").matrix is not None
    assert list(tmp_path.iterdir()) == []  # the PNGs went to a temporary folder, now removed
