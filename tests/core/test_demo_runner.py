"""The demo runner: the registry covers every lesson, a failing scenario is reported and the rest run,
a missing extra skips a scenario, progress events arrive in order, and every CLI --html uses Report.to_html."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

from dldebug.cli.app import main
from dldebug.demo import SCENARIOS, DemoEvent, run_demo
from dldebug.demo import training as training_scenario
from dldebug.errors import MissingDependencyError
from dldebug.findings import Report

CLI = Path(__file__).resolve().parents[2] / "src" / "dldebug" / "cli"


def test_registry_covers_all_eleven_lessons_once_each_name() -> None:
    names = [s.name for s in SCENARIOS]
    assert len(names) == len(set(names))
    assert sorted({n for s in SCENARIOS for n in s.lessons}) == list(range(1, 12))
    for scenario in SCENARIOS:
        module, _, func = scenario.target.partition(":")
        assert callable(getattr(importlib.import_module(module), func)), scenario.target


def _broken(_ctx: object) -> Report:
    raise RuntimeError("planted failure inside a scenario")


def test_a_failing_scenario_is_reported_and_the_rest_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training_scenario, "scenario", _broken)
    report = run_demo(tmp_path, scenarios=["locally_connected", "training"], quick=True)
    failed, ran = report.sections  # report order, not the order asked for
    assert [s.meta["scenario"] for s in report.sections] == ["training", "locally_connected"]
    assert failed.meta["status"] == "failed" and ran.meta["status"] == "ok"
    finding = failed.get("demo.failed")
    assert finding is not None and "RuntimeError: planted failure inside a scenario" in finding.message
    assert "planted failure" in finding.evidence["traceback"] and "_broken" in finding.evidence["traceback"]
    assert ran.has("locally_connected.matches_definition")
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["meta"]["failed"] == ["training"] and saved["meta"]["lessons_exercised"] == [5]
    assert "demo.failed" in (tmp_path / "index.html").read_text()


def test_a_missing_extra_skips_the_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def needs_keras(_ctx: object) -> Report:
        raise MissingDependencyError("tf_keras", "keras", "the demo")

    monkeypatch.setattr(training_scenario, "scenario", needs_keras)
    (section,) = run_demo(tmp_path, scenarios=["training"]).sections
    assert section.meta["status"] == "skipped" and section.get("demo.skipped") is not None
    assert "pip install 'dldebug[keras]'" in section.own_findings[0].message


def test_progress_events_arrive_in_order(tmp_path: Path) -> None:
    events: list[DemoEvent] = []
    run_demo(tmp_path, scenarios=["transfer", "locally_connected"], quick=True, progress=events.append)
    assert [(e.scenario, e.phase) for e in events if e.phase != "progress"] == [
        ("transfer", "start"), ("transfer", "done"), ("locally_connected", "start"), ("locally_connected", "done")]
    moves = [e.fraction for e in events if e.scenario == "transfer" and e.phase == "progress"]
    assert len(moves) == 5 and moves == sorted(moves) and moves[-1] == 1.0
    assert all(e.status == "ok" and e.seconds > 0 for e in events if e.phase == "done")


def test_cli_demo_exits_3_after_writing_the_report_when_a_scenario_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(training_scenario, "scenario", _broken)
    code = main(["demo", "--scenario", "training", "--scenario", "locally_connected", "--quick",
                 "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 3 and (tmp_path / "index.html").is_file()
    assert "scenario(s) training failed" in " ".join(err.split()) and "Traceback" not in out + err
    assert "Lessons exercised: 5; not exercised: 1, 2, 3, 4, 6, 7, 8, 9, 10, 11" in out


def test_every_cli_html_option_goes_through_report_to_html() -> None:
    for module in sorted(CLI.glob("*.py")):
        source = module.read_text()
        assert not re.search(r"render_html|write_html|report\.html", source), module.name
    assert "report.to_html(html)" in (CLI / "common.py").read_text()


def test_show_html_is_the_report_renderer(tmp_path: Path, full_report: Report,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    full_report.save_json(tmp_path / "r.json")
    assert main(["show", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").read_text() == Report.from_json((tmp_path / "r.json").read_text()).to_html()
    assert "HTML report written to" in capsys.readouterr().out


def test_the_demo_runs_on_one_thread_and_restores_the_setting(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    seen: list[int] = []

    def record(_ctx: object) -> Report:
        seen.append(torch.get_num_threads())
        return Report(title="recorded")

    monkeypatch.setattr(training_scenario, "scenario", record)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run_demo(tmp_path, scenarios=["training"])
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
