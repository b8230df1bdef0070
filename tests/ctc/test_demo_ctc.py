"""The demo's ctc scenario: the buggy set-up's findings, the fixed run's curve and accuracy."""

from __future__ import annotations

import pytest

from dldebug.demo.context import DemoContext
from dldebug.demo.ctc import scenario
from dldebug.findings import Report


@pytest.mark.slow
def test_ctc_scenario_reports_the_bug_and_the_fixed_run(digits, tmp_path) -> None:
    section = scenario(DemoContext(out_dir=tmp_path, quick=True, data=digits))
    assert section.has("ctc.missing_blank") and section.has("ctc.target_out_of_range")
    setups = section.table("ctc.setups").records()
    assert setups[0]["CheckedCTCLoss"] == "CTC set-up check failed on batch 0 (2 error(s)):"
    assert setups[1]["check_ctc findings (warning+)"] == "none"
    accuracy = section.table("ctc.sequence_accuracy").column("held-out sequence accuracy")
    assert len(accuracy) == section.meta["epochs"] == 3
    assert accuracy[-1] == pytest.approx(section.meta["final_sequence_accuracy"], abs=1e-4)
    assert accuracy[-1] > accuracy[0]  # it learns: CTC leaves the all-blank plateau
    curve = section.figure("ctc.training_curve")
    assert len(curve.series[0].y) == curve.markers[-1][0] + 1 and curve.series[0].y[-1] < curve.series[0].y[0]
    assert "Quick mode" in curve.caption
    assert Report.from_json(section.to_json()) == section
