"""Shared CLI plumbing: console output, report emission and exit statuses."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from dldebug.findings import Report, Severity

console = Console()
err_console = Console(stderr=True)


class FailOn(str, Enum):
    """``--fail-on`` values: exit 1 when a finding at least this severe exists."""

    error = "error"
    warning = "warning"


FAIL_ON_OPTION = typer.Option(None, "--fail-on", help="Exit with status 1 if a finding of this severity "
                              "(or worse) exists.", case_sensitive=False)
JSON_OPTION = typer.Option(False, "--json", help="Print the report as JSON instead of a table.")
HTML_OPTION = typer.Option(None, "--html", help="Also write a self-contained HTML report to this file.",
                           dir_okay=False)
WEIGHTS_OPTION = typer.Option(None, "--weights", help="State dict (.safetensors/.pt) for a 'module:factory' model.",
                              dir_okay=False)
JSON_OUT_OPTION = typer.Option(None, "--json-out", help="Also write the JSON report to this file.",
                               dir_okay=False)


def output_spec(text: str | None) -> str | int | None:
    """``--output``: a key/attribute name (``logits``) of a structured output, or a whole number meaning an index."""
    if text is None:
        return None
    return int(text) if text.strip().lstrip("-").isdigit() else text.strip()


def emit(report: Report, *, as_json: bool = False, html: Path | None = None, json_out: Path | None = None,
         fail_on: FailOn | None = None, on_console: Report | None = None) -> None:
    """Render ``report`` and exit with the status ``--fail-on`` asks for.

    ``on_console`` is what the terminal shows instead of ``report`` (e.g. a table narrowed to its
    width); ``--json``, ``--html`` and ``--json-out`` always get the whole ``report``.
    """
    from dldebug.report.console import render_console

    if as_json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        render_console(report if on_console is None else on_console, console)
    if html is not None:
        path = report.to_html(html)
        if not as_json:
            console.print(f"HTML report written to {path}")
    if json_out is not None:
        report.save_json(json_out)
    raise typer.Exit(exit_status(report, fail_on))


def exit_status(report: Report, fail_on: FailOn | str | None) -> int:
    """0, or 1 when ``fail_on`` is given and a finding at least that severe exists."""
    if fail_on is None:
        return 0
    floor = Severity.parse(fail_on.value if isinstance(fail_on, FailOn) else fail_on)
    return 1 if report.filter(min_severity=floor) else 0
