"""``dldebug show``: print a saved report, or convert it to HTML."""

from __future__ import annotations

from pathlib import Path

import typer

from dldebug.cli.common import FAIL_ON_OPTION, HTML_OPTION, JSON_OPTION, FailOn, emit
from dldebug.errors import FileFormatError


def command(
    report_json: Path = typer.Argument(..., help="A report.json written by dldebug."),
    as_json: bool = JSON_OPTION,
    html: Path = HTML_OPTION,
    fail_on: FailOn = FAIL_ON_OPTION,
) -> None:
    """Print a saved report.json as a table (or convert it with --html)."""
    from dldebug.findings import Report

    if report_json.is_dir():
        raise FileFormatError("is a folder, expected a report.json file (e.g. dldebug-report/report.json).",
                              path=report_json)
    if not report_json.is_file():
        raise FileFormatError("report file not found.", path=report_json)
    try:
        text = report_json.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FileFormatError("not a text file; expected a dldebug report.json.", path=report_json) from None
    try:
        report = Report.from_json(text)
    except FileFormatError as exc:
        raise FileFormatError(str(exc), path=report_json) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(f"not a dldebug report ({type(exc).__name__}: {exc}).", path=report_json) from None
    emit(report, as_json=as_json, html=html, fail_on=fail_on)
