"""``dldebug demo --quick``'s report.json, read the way a script would: all eleven lessons exercised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dldebug.demo import SCENARIOS

pytestmark = pytest.mark.slow


def test_report_json_carries_each_scenarios_lessons(quick_demo: tuple[Path, int]) -> None:
    folder, status = quick_demo
    assert status == 0
    data = json.loads((folder / "report.json").read_text())
    sections = {s["meta"]["scenario"]: s["meta"] for s in data["sections"]}
    assert list(sections) == [s.name for s in SCENARIOS]
    for scenario in SCENARIOS:
        meta = sections[scenario.name]
        assert meta["status"] == "ok" and meta["lessons"] == list(scenario.lessons) and meta["seconds"] > 0
    exercised = sorted({n for meta in sections.values() for n in meta["lessons"]})
    assert exercised == data["meta"]["lessons_exercised"] == list(range(1, 12))
    assert data["meta"]["lessons_not_exercised"] == [] and data["meta"]["failed"] == []
    assert data["meta"]["quick"] is True


def test_every_lesson_has_a_finding_or_evidence(quick_demo: tuple[Path, int]) -> None:
    data = json.loads((quick_demo[0] / "report.json").read_text())

    def walk(section: dict) -> list[dict]:
        return [section, *(s for child in section["sections"] for s in walk(child))]

    lessons_with_findings = {f["lesson"] for top in data["sections"] for s in walk(top) for f in s["findings"]
                             if f["lesson"]}
    with_evidence = {n for top in data["sections"] if top["tables"] or top["figures"] or top["sections"]
                     for n in top["meta"]["lessons"]}
    assert set(range(1, 12)) <= lessons_with_findings | with_evidence
    assert {4, 5, 7, 8, 9, 10, 11} <= lessons_with_findings  # each tool's own finding, not only a table
