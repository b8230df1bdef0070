"""Console and HTML renderers, and atomic writes."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from dldebug.report import atomic
from dldebug.report.atomic import write_text_atomic
from dldebug.report.console import render_console
from dldebug.report.html import render_html


def test_console_lists_every_finding_with_severity(full_report):
    buffer = io.StringIO()
    render_console(full_report, Console(file=buffer, width=140, color_system=None))
    text = buffer.getvalue()
    for check in ("loss.plateau", "lr.batch_changed", "loss.nonfinite"):
        assert check in text
    assert "3 finding(s): 1 error, 1 warning, 1 info" in text
    assert "fix: lower the learning rate" in text


def test_html_is_self_contained_with_inline_svg(tmp_path, full_report):
    path = full_report.to_html(tmp_path / "r.html")
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert text.count("<svg") == 2  # one per figure
    assert "loss.nonfinite" in text and "first NaN" in text
    # nothing is fetched from the network: no external scripts, styles or images
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert "<script" not in text


def test_html_escapes_user_text():
    from dldebug import Finding, Report, Severity

    html = render_html(Report([Finding("a.b", Severity.INFO, "<script>alert(1)</script>")]))
    assert "<script>alert" not in html and "&lt;script&gt;" in html


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    write_text_atomic(target, "old content")

    def explode(_src, _dst):
        raise OSError("disk full (simulated during rename)")

    monkeypatch.setattr(atomic.os, "replace", explode)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(target, "new content that never lands")
    assert target.read_text() == "old content"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # temp file removed


def test_atomic_write_failure_mid_write_leaves_old_file(tmp_path):
    target = tmp_path / "index.html"
    write_text_atomic(target, "v1")

    def half_then_fail(handle):
        handle.write(b"partial")
        raise KeyboardInterrupt  # e.g. Ctrl-C while rendering

    with pytest.raises(KeyboardInterrupt):
        atomic.write_with(target, half_then_fail)
    assert target.read_text() == "v1"
    assert len(list(tmp_path.iterdir())) == 1


def test_report_save_json_and_to_html_write_files(tmp_path, full_report):
    report = full_report
    report.save_json(tmp_path / "sub" / "report.json")
    assert (tmp_path / "sub" / "report.json").read_text() == report.to_json()


def test_atomic_write_gives_normal_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "new.html", "x")
        assert path.stat().st_mode & 0o777 == 0o644
        path.chmod(0o600)
        write_text_atomic(path, "y")  # an existing file keeps its mode
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(umask)
