"""Property tests: diagnose_curve never raises on numeric input and keeps its contracts."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dldebug import diagnose_curve

ALLOWED = {"loss.nonfinite", "loss.diverging", "loss.stuck", "loss.plateau", "loss.oscillating", "loss.collapsed",
           "loss.blowup", "curve.too_short"}

any_floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
curves = st.one_of(
    arrays(np.float64, st.integers(0, 400), elements=any_floats),
    arrays(np.float32, st.integers(0, 400), elements=st.floats(width=32, allow_nan=True, allow_infinity=True)),
    st.lists(st.one_of(st.integers(-10**6, 10**6), any_floats), max_size=200),
)


def check_contract(report, n: int) -> None:
    ids = [f.check for f in report.findings]
    assert set(ids) <= ALLOWED
    assert len(ids) == len(set(ids))  # never more than one finding per phenomenon
    assert not ({"loss.stuck", "loss.plateau"} <= set(ids))
    for finding in report.findings:
        assert all(type(v) in (int, float, str) for v in finding.evidence.values())
        if finding.check == "curve.too_short":  # not judged: it has no segment
            assert finding.evidence["points"] < 8 and report.meta["judged"] is False
            continue
        assert {"start_step", "end_step", "metric"} <= set(finding.evidence)
        assert 0 <= finding.evidence["start_step"] <= finding.evidence["end_step"] <= max(n - 1, 0)
    json.loads(report.to_json())


@settings(max_examples=200, deadline=None, derandomize=True)
@given(values=curves, mode=st.sampled_from(["min", "max"]), with_lr=st.booleans())
def test_never_raises_on_numeric_input(values, mode: str, with_lr: bool) -> None:
    lr = np.resize(np.array([0.0, 1e-3, np.nan, 1e-3, np.inf]), len(values)) if with_lr else None
    report = diagnose_curve(values, name="m", mode=mode, lr=lr)
    check_contract(report, len(values))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    values=arrays(np.float64, st.integers(8, 3000), elements=st.floats(-1e300, 1e300)),
    stride=st.integers(1, 1000),
)
def test_steps_in_caller_units(values: np.ndarray, stride: int) -> None:
    steps = stride * np.arange(len(values))
    report = diagnose_curve(values, steps)
    plain = diagnose_curve(values)
    assert [f.check for f in report.findings] == [f.check for f in plain.findings]
    for scaled, unscaled in zip(report.findings, plain.findings, strict=True):
        assert scaled.evidence["start_step"] == stride * unscaled.evidence["start_step"]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    values=arrays(np.float64, st.integers(8, 500), elements=st.floats(-1e6, 1e6)),
    scale=st.sampled_from([2.0**-20, 2.0**-10, 2.0**10, 2.0**20]),  # powers of two scale exactly
)
def test_findings_do_not_depend_on_scale(values: np.ndarray, scale: float) -> None:
    scaled, plain = diagnose_curve(values * scale), diagnose_curve(values)
    assert [f.check for f in scaled.findings] == [f.check for f in plain.findings]
    for a, b in zip(scaled.findings, plain.findings, strict=True):
        assert (a.evidence["start_step"], a.evidence["end_step"]) == (b.evidence["start_step"], b.evidence["end_step"])


@settings(max_examples=30, deadline=None, derandomize=True)
@given(position=st.integers(0, 299), bad=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_first_nonfinite_step_is_exact(position: int, bad: float) -> None:
    values = np.linspace(2.0, 0.1, 300)
    values[position] = bad
    finding = diagnose_curve(values, 3 * np.arange(300)).get("loss.nonfinite")
    assert finding is not None and finding.evidence["first_step"] == 3 * position
