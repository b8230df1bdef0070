"""Section 4 acceptance: the digits CNN trained for real, watched by the monitor (the demo's own runs)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dldebug.demo.digits import DigitsData
from dldebug.demo.training_signals import RUNS, run_signal

RUN = {run.name: run for run in RUNS}


@pytest.mark.slow
def test_healthy_run_is_silent(digits: DigitsData) -> None:
    history, report = run_signal(RUN["healthy"], digits)
    assert history.test_accuracy[-1] > 0.9  # it really learned
    assert report.filter(min_severity="warning") == ()


@pytest.mark.slow
def test_learning_rate_far_too_high(digits: DigitsData) -> None:
    history, report = run_signal(RUN["lr_too_high"], digits)
    first_nan = next(i for i, v in enumerate(history.losses) if not math.isfinite(v))  # the oracle
    nonfinite = report.get("loss.nonfinite")
    assert nonfinite is not None and nonfinite.evidence["step"] == history.steps[first_nan]
    blowup = report.get("loss.blowup")  # the early rise before the NaN: a blow-up, ending before the NaN
    assert blowup is not None and blowup.severity.value == "error"
    assert blowup.evidence["end_step"] < nonfinite.evidence["step"] and blowup.evidence["jump_step"] <= 5
    assert not report.has("loss.diverging") and not report.has("loss.plateau")
    culprit = report.get("monitor.nonfinite_module")
    assert culprit is not None and culprit.evidence["step"] == nonfinite.evidence["step"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lr_zero", "frozen"])
def test_no_learning_is_stuck(digits: DigitsData, name: str) -> None:
    history, report = run_signal(RUN[name], digits)
    stuck = report.get("loss.stuck")
    assert stuck is not None and stuck.lesson == 3
    assert (stuck.evidence["start_step"], stuck.evidence["end_step"]) == (0, history.steps[-1])
    assert not report.has("loss.plateau")


@pytest.mark.slow
def test_poor_initialisation_plateaus_then_breaks(digits: DigitsData) -> None:
    history, report = run_signal(RUN["plateau"], digits)
    plateau = report.get("loss.plateau")
    assert plateau is not None and plateau.lesson == 2
    start, end = plateau.evidence["start_step"], plateau.evidence["end_step"]
    losses = np.asarray(history.losses)
    assert start == 0 and 10 <= end <= 0.6 * history.steps[-1]
    assert abs(np.median(losses[:end + 1]) - math.log(10)) < 0.02  # flat at chance level (ln 10) up to end_step
    assert losses[-10:].mean() < 1.0  # and it broke: the run learned afterwards
    assert report.filter(min_severity="warning") == ()


@pytest.mark.slow
def test_overconfident_head(digits: DigitsData) -> None:
    history, report = run_signal(RUN["overconfident"], digits)
    finding = report.get("logits.overconfident")
    assert finding is not None and finding.lesson == 6
    assert finding.evidence["gap_end"] > 8 and finding.evidence["gap_growth"] > 2
    assert finding.evidence["top_prob"] > 0.999 and finding.evidence["loss_end"] < 1e-2
    assert finding.evidence["train_accuracy"] == 1.0  # 64 images memorised
    assert min(history.losses[-20:]) < 1e-2
