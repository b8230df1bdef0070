"""How a monitored run ends: a short summary through a logger and, on request, the report on disk.

Only rank 0 of a distributed run speaks and writes, so a run prints one summary and writes one
report whatever the number of processes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dldebug.findings import Report, Severity

__all__ = ["REPORT_FILES", "summary_text", "write_report"]

#: The files ``report_dir=`` receives.
REPORT_FILES = ("report.html", "report.json")
_SHOWN = 5


def summary_text(report: Report, steps: int, written: Path | None = None) -> str:
    """The end-of-run summary: the warnings and errors (at most 5, worst first), or "no problem found in N steps".

    Example:
        >>> summary_text(Report(title="Training monitor"), 120)
        'dldebug: no problem found in 120 steps.'
    """
    serious = sorted(report.filter(min_severity="warning"), key=lambda f: -f.severity.rank)
    notes = [f for f in report.findings if f.severity is Severity.INFO]
    if serious:
        lines = [f"dldebug: {len(serious)} problem(s) found in {steps} steps:"]
        lines += [f"  [{f.severity.value}] {f.check}: {f.message}" for f in serious[:_SHOWN]]
        if len(serious) > _SHOWN:
            lines.append(f"  ... and {len(serious) - _SHOWN} more")
    else:
        lines = [f"dldebug: no problem found in {steps} steps."]
    if notes:
        lines[0] += f" Notes: {', '.join(sorted({f.check for f in notes}))}."
    if written is not None:
        lines.append(f"  Report: {written}")
    return "\n".join(lines)


def write_report(report: Report, report_dir: str | Path) -> Path:
    """Write ``report.html`` and ``report.json`` (atomically) into ``report_dir``; returns the HTML path."""
    folder = Path(report_dir)
    report.save_json(folder / REPORT_FILES[1])
    return report.to_html(folder / REPORT_FILES[0])


def log_summary(logger: logging.Logger, report: Report, steps: int, written: Path | None) -> None:
    """Log :func:`summary_text`: at WARNING when a problem was found, else at INFO."""
    level = logging.WARNING if report.filter(min_severity="warning") else logging.INFO
    logger.log(level, summary_text(report, steps, written))
