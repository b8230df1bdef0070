"""The curves quoted in issue 14 (real high-lr runs), filled in between the quoted points: each must get
a warning or an error, never only "an early plateau that broke, not a bug"."""

from __future__ import annotations

import numpy as np
import pytest

import dldebug


def _path(points: list[tuple[int, float]], length: int, seed: int, noise: float = 0.1) -> list[float]:
    """A curve through the quoted (step, loss) points, geometric in between, with multiplicative noise."""
    rng = np.random.default_rng(seed)
    steps, values = zip(*points, strict=True)
    curve = np.exp(np.interp(np.arange(length), steps, np.log(values)))
    quoted = set(steps)
    jitter = np.exp(rng.normal(0, noise, length))
    return [float(v if i in quoted else v * j) for i, (v, j) in enumerate(zip(curve, jitter, strict=True))]


ISSUE_RUNS = {
    # Lightning, SGD momentum 0.9, lr 20: 2.307, 12.4, 28.4, 17191, 1031, ... ending at 13.56
    "lightning_sgd_momentum_lr20": [(0, 2.307), (1, 12.4), (2, 28.4), (3, 17191), (4, 1031), (80, 60), (199, 13.56)],
    # lr 1000: peak 1.6e36, ends at 1382
    "lightning_sgd_momentum_lr1000": [(0, 2.307), (2, 4e12), (4, 1.6e36), (10, 1e9), (80, 3e3), (199, 1382)],
    # SGD lr 100: 2.307 -> 7.1e11 -> ~30-40
    "lightning_sgd_lr100": [(0, 2.307), (2, 7.1e11), (6, 300), (12, 35), (199, 33)],
    # HF BERT lr 10: 0.695, 25.5, 62.8, 133 ... 4.71 (chance level 0.69)
    "hf_bert_lr10": [(0, 0.695), (1, 25.5), (2, 62.8), (3, 133), (30, 20), (99, 4.71)],
    # HF GPT-2 lr 10: 3.9 -> 2670 ... 6633 ... 246
    "hf_gpt2_lr10": [(0, 3.9), (2, 2670), (20, 6633), (60, 900), (99, 246)],
}


@pytest.mark.parametrize("name", sorted(ISSUE_RUNS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_issue_high_lr_curve_is_a_warning_or_error(name: str, seed: int) -> None:
    points = ISSUE_RUNS[name]
    losses = _path(points, points[-1][0] + 1, seed)
    report = dldebug.diagnose_curve(losses)
    serious = report.filter(min_severity="warning")
    assert serious, [(f.check, f.severity.value, f.message) for f in report.findings]
    assert {f.check for f in serious} & {"loss.blowup", "loss.diverging"}
    assert not any(f.check == "loss.plateau" and "not a bug" in (f.fix or "") for f in report.findings)
