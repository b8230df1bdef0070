"""Finding / Severity / Report: the result model and its JSON round-trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dldebug import Finding, InputError, Report, Severity, Table
from dldebug.errors import FileFormatError


def test_json_round_trip_is_lossless_for_every_field(full_report):
    report = full_report
    text = report.to_json()
    json.loads(text)  # strict JSON: no bare NaN/Infinity tokens
    assert "NaN" in text and "Infinity" in text
    back = Report.from_json(text)
    assert back == report
    assert back.to_json() == text
    f = back.get("loss.nonfinite")
    assert f is not None and math.isnan(f.evidence["loss"]) and f.evidence["step"] == 12
    assert isinstance(f.evidence["step"], int)
    assert back.figure("curve").series[0].y[1] == math.inf
    assert back.figure("curve").spans[0].severity is Severity.WARNING
    assert back.table("segments").rows[1] == (11, 20.5)
    assert back.sections[0].checks[1].reason == "no CTC loss"
    assert back.figure("cm").matrix == ((1, 2), (3, 4))


def test_truthiness_and_filters(full_report):
    report = full_report
    assert not report  # an error finding in a section
    assert report.has("loss.plateau") and report.has("loss.nonfinite") and not report.has("loss.stuck")
    assert report.has("loss.")  # prefix match
    assert [f.check for f in report.filter(severity="warning")] == ["lr.batch_changed"]
    assert [f.check for f in report.filter(min_severity=Severity.WARNING)] == ["lr.batch_changed", "loss.nonfinite"]
    assert report.worst_severity is Severity.ERROR
    healthy = Report([Finding("loss.plateau", Severity.INFO, "fine")])
    assert healthy and healthy.ok
    assert Report() and len(Report()) == 0


def test_severity_order_and_parse():
    assert Severity.INFO < Severity.WARNING < Severity.ERROR
    assert Severity.parse("ERROR") is Severity.ERROR
    with pytest.raises(InputError, match="Unknown severity 'fatal'; expected one of: info, warning, error."):
        Severity.parse("fatal")


def test_evidence_becomes_plain_python():
    f = Finding("x.y", Severity.INFO, "m", {"a": np.float32(1.5), "b": torch.tensor([1, 2]), "c": (np.int8(3),)})
    assert f.evidence == {"a": 1.5, "b": [1, 2], "c": [3]}
    assert type(f.evidence["a"]) is float


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"check": ""}, "Finding.check must be a non-empty string id"),
        ({"lesson": 12}, "Finding.lesson must be a lesson number 1..11 or None; got 12."),
    ],
)
def test_bad_findings_are_refused(kwargs, message):
    args = {"check": "a.b", "severity": Severity.INFO, "message": "m"} | kwargs
    with pytest.raises(InputError, match=message):
        Finding(**args)


def test_table_row_length_checked():
    with pytest.raises(InputError, match="row 0 has 1 values but there are 2 columns"):
        Table("t", ("a", "b"), ((1,),))


def test_from_json_rejects_garbage_with_a_clear_error():
    with pytest.raises(FileFormatError, match="not a dldebug JSON report"):
        Report.from_json("{not json")
    with pytest.raises(FileFormatError, match="unsupported report schema"):
        Report.from_json('{"schema": "other/9"}')


def test_table_and_figure_lookup_errors_list_names(full_report):
    with pytest.raises(InputError, match=r"No table named 'nope' in report 'outer'; tables: \['segments'\]"):
        full_report.table("nope")
