"""The Hugging Face demo scenario: real tiny BERT / GPT-2, each planted problem found, the healthy runs silent."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")

from dldebug.demo.context import DemoContext
from dldebug.demo.hugging_face import scenario
from dldebug.findings import Report, Severity


def _sections(report: Report) -> dict[str, Report]:
    found = {}
    stack = [report]
    while stack:
        current = stack.pop()
        found[current.title] = current
        stack.extend(current.sections)
    return found


def _serious(report: Report) -> list[str]:
    return [f.check for f in report.filter(min_severity=Severity.WARNING)]


def test_hugging_face_scenario(tmp_path: Path) -> None:
    report = scenario(DemoContext(out_dir=tmp_path, quick=True))
    sections = _sections(report)
    healthy_preflight = next(r for t, r in sections.items() if t.startswith("Pre-flight, dict batch"))
    planted = next(r for t, r in sections.items() if t.startswith("Pre-flight, planted"))
    assert _serious(healthy_preflight) == [] and healthy_preflight.checks
    assert "preflight.bad_targets" in _serious(planted)
    healthy_run = next(r for t, r in sections.items() if t.startswith("BERT, AdamW lr 0.0005"))
    high_run = next(r for t, r in sections.items() if t.startswith("BERT, AdamW lr 10"))
    assert _serious(healthy_run) == []
    assert high_run.has("loss.blowup") or high_run.has("loss.nonfinite")
    transfer = sections["Transfer cut on BertForSequenceClassification"]
    head = next(f for f in transfer.findings if f.check == "transfer.head")
    assert head.evidence["suggested_cut"] == "bert.encoder.layer.1", head.evidence
    compression = sections["Truncated SVD of GPT2LMHeadModel (rank 4)"]
    assert compression.has("compress.tied_weights")
    before, after = compression.tables[0].rows[0][1:]
    assert after < before
