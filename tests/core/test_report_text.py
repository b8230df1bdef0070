"""What a person reads first: print(report) lists the findings; the console folds tables that hold no finding."""

from __future__ import annotations

import io
import math

import pytest
import torch
from rich.console import Console

from dldebug import Finding, Report, Severity, Table
from dldebug.monitor import TrainingMonitor
from dldebug.report.console import render_console
from dldebug.report.relevance import finding_terms, holds_finding


def _console_text(report: Report, **kwargs: object) -> str:
    buffer = io.StringIO()
    render_console(report, Console(file=buffer, width=120, color_system=None), **kwargs)  # type: ignore[arg-type]
    return buffer.getvalue()


def test_repr_lists_each_finding_worst_first(full_report: Report) -> None:
    lines = repr(full_report).splitlines()
    assert lines[0] == "Report 'outer': 3 findings (1 error, 1 warning, 1 info); 1 table, 2 figures, 1 section"
    assert [line.split()[:2] for line in lines[1:]] == [
        ["ERROR", "loss.nonfinite"], ["WARNING", "lr.batch_changed"], ["INFO", "loss.plateau"]]
    assert lines[1].endswith("loss became NaN") and str(full_report) == repr(full_report)


def test_repr_of_a_healthy_run_says_so_in_one_line() -> None:
    report = Report(title="Training monitor", tables=(Table("monitor.layers", ("module",), [(f"m{i}",)
                                                                                            for i in range(82)]),),
                    meta={"steps_observed": 1200})
    assert repr(report) == "Report 'Training monitor': no problem found in 1,200 steps; 1 table"


def test_repr_cuts_long_lists_and_messages() -> None:
    findings = [Finding(f"a.b{i}", Severity.WARNING, "x" * 300) for i in range(20)]
    lines = Report(findings).summary(limit=5, width=40).splitlines()
    assert len(lines) == 1 + 5 + 1 and lines[-1] == "  ... and 15 more (report.findings)"
    assert all(len(line) < 90 for line in lines[1:6]) and lines[1].endswith("...")


def test_lessons_come_from_findings_and_meta() -> None:
    inner = Report([Finding("x.y", "info", "m", lesson=7)], meta={"lessons": [4, 99]})
    assert Report([Finding("a.b", "info", "m", lesson=2)], sections=(inner,)).lessons == (2, 4, 7)


def _train_bert(steps: int, *, poison_at: int | None = None) -> Report:
    hf = pytest.importorskip("dldebug.demo.tiny_hf")
    pytest.importorskip("transformers")
    model = hf.tiny_bert_classifier().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    monitor = TrainingMonitor(model, every=1, layer_stats=True)
    for step in range(steps):
        if step == poison_at:
            with torch.no_grad():
                model.classifier.weight.fill_(math.nan)
        batch = hf.token_batch(seed=step % 4)
        optimizer.zero_grad()
        output = model(**batch)
        output.loss.backward()
        optimizer.step()
        monitor.observe(output.loss, logits=output.logits, targets=batch["labels"], batch_size=8, lr=1e-3)
    monitor.close()
    return monitor.report()


def test_a_healthy_hugging_face_run_prints_a_short_report() -> None:
    report = _train_bert(30)
    layers = report.table("monitor.layers")
    assert len(layers.rows) > 20 and not report.filter(min_severity="warning")
    text = _console_text(report)
    assert len(text.splitlines()) < 20
    assert f"table monitor.layers: {len(layers.rows)} rows x 5 columns, holds no finding" in text
    assert text.rstrip().endswith("no problem found in 30 steps")
    assert repr(report).startswith("Report 'Training monitor': no problem found in 30 steps")
    assert len(_console_text(report, all_tables=True).splitlines()) > len(layers.rows)


def test_the_layer_table_is_shown_once_a_finding_names_one_of_its_modules() -> None:
    report = _train_bert(12, poison_at=6)
    culprit = report.get("monitor.nonfinite_module")
    assert culprit is not None and culprit.evidence["module"] == "classifier"
    assert holds_finding(report.table("monitor.layers"), finding_terms(report))
    text = _console_text(report)
    assert "holds no finding" not in text and "classifier" in text
    printed = repr(report).splitlines()
    assert printed[1].startswith("  ERROR") and any("monitor.nonfinite_module" in line for line in printed)


@pytest.mark.parametrize(("cell", "held"), [("features.2", True), ("features.3", False), ("see loss.stuck", True),
                                            (0.5, False)])
def test_holds_finding_matches_evidence_values_and_check_ids(cell: object, held: bool) -> None:
    report = Report([Finding("loss.stuck", "error", "m", {"module": "features.2", "layers": "fc, head"})])
    table = Table("t", ("c",), ((cell,),))
    assert holds_finding(table, finding_terms(report)) is held
    assert holds_finding(Table("t", ("c",), (("head",),)), finding_terms(report))  # "a, b" lists are split
