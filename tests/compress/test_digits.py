"""Acceptance on real data: the digits CNN trained for real (fixture ``trained_digits``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dldebug.compress import accuracy_vs_size, compress_linear_layers
from dldebug.demo.digits import DigitsCNN, DigitsData, TrainHistory, accuracy
from dldebug.errors import ConfigError

pytestmark = pytest.mark.slow


def test_accuracy_vs_size_curve_and_a_budget_within_one_point(
        trained_digits: tuple[DigitsCNN, TrainHistory], digits: DigitsData) -> None:
    model, _ = trained_digits
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def test_accuracy(candidate: nn.Module) -> float:
        return accuracy(candidate, digits.x_test, digits.y_test)

    curve = accuracy_vs_size(model, test_accuracy, param_ratios=(0.05, 0.1, 0.2, 0.3, 0.5),
                             calib_data=digits.x_train[:512])
    sizes = [p.model_params for p in curve.points]
    assert sizes == sorted(sizes, reverse=True)  # larger budgets first, each smaller than the last
    assert curve.points[-1].accuracy < curve.original.accuracy - 0.05  # the curve really bends down
    best = curve.smallest_within(0.01)
    assert best.model_params < 0.5 * curve.original.model_params  # at most half the parameters ...
    assert curve.original.accuracy - best.accuracy <= 0.01  # ... within one point
    # the chosen budget, applied for real, keeps the promise on the test set
    result = compress_linear_layers(model, param_ratio=best.param_ratio, calib_data=digits.x_train[:512],
                                    eval_fn=test_accuracy)
    assert result.accuracy_after == pytest.approx(best.accuracy)
    assert result.report.has("compress.accuracy_kept") and not result.report.has("compress.accuracy_drop")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert curve.report.get("compress.size_tradeoff").evidence["model_params"] == best.model_params
    assert curve.figure.name == "compress.accuracy_vs_size" and len(curve.table.rows) == 6


def test_data_aware_beats_plain_on_the_demo_model(trained_digits: tuple[DigitsCNN, TrainHistory],
                                                  digits: DigitsData) -> None:
    """Held-out output error of classifier.1 and test accuracy, at equal rank (the demo's claim)."""
    from dldebug.demo.compression import RANKS, _data_aware_vs_plain

    class _Ctx:
        data = digits

    table, _, finding = _data_aware_vs_plain(trained_digits[0], _Ctx())  # type: ignore[arg-type]
    rows = table.records()
    assert [r["rank"] for r in rows] == list(RANKS)
    assert all(r["data-aware output error"] < r["plain output error"] for r in rows)
    assert sum(r["data-aware accuracy"] >= r["plain accuracy"] for r in rows) >= len(rows) - 1
    assert finding.evidence["wins"] == len(RANKS)


def test_curve_rejects_bad_ratios(trained_digits: tuple[DigitsCNN, TrainHistory]) -> None:
    with pytest.raises(ConfigError, match=r"param_ratios must be a non-empty list of values in \(0, 1\)"):
        accuracy_vs_size(trained_digits[0], lambda m: 0.0, param_ratios=(0.5, 1.5))


def test_demo_scenario(trained_digits: tuple[DigitsCNN, TrainHistory], digits: DigitsData, tmp_path) -> None:
    from dldebug.demo.compression import scenario
    from dldebug.demo.context import DemoContext

    ctx = DemoContext(out_dir=tmp_path, data=digits, _baseline=trained_digits)
    report = scenario(ctx)
    assert {"compress.applied", "compress.accuracy_kept", "compress.data_aware_better",
            "compress.size_tradeoff"} <= {f.check for f in report.findings}
    assert report.meta["accuracy_before"] - report.meta["accuracy_after"] <= 0.01
    report.figure("compress.accuracy_vs_size")
    report.figure("compress.data_aware_vs_plain")
    report.to_html(tmp_path / "index.html")
