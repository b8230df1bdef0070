"""Console renderer: a rich table of findings, coloured by severity."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from dldebug.findings import Report, Severity

SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def _evidence_text(evidence: dict, limit: int = 6) -> str:
    items = list(evidence.items())
    parts = []
    for key, value in items[:limit]:
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, list) and len(value) > 6:
            value = f"[{', '.join(map(str, value[:6]))}, ... ({len(value)} items)]"
        parts.append(f"{key}={value}")
    if len(items) > limit:
        parts.append(f"... (+{len(items) - limit})")
    return ", ".join(parts)


def render_console(report: Report, console: Console | None = None, *, show_tables: bool = True,
                   max_rows: int = 20) -> None:
    """Print the report's findings (and, optionally, its tables) to ``console``."""
    console = console or Console()
    _render(report, console, show_tables, max_rows, depth=0)
    findings = report.findings
    counts = {s: len(report.filter(severity=s)) for s in Severity}
    summary = Text(f"{len(findings)} finding(s): ")
    summary.append(f"{counts[Severity.ERROR]} error", SEVERITY_STYLE[Severity.ERROR])
    summary.append(", ")
    summary.append(f"{counts[Severity.WARNING]} warning", SEVERITY_STYLE[Severity.WARNING])
    summary.append(", ")
    summary.append(f"{counts[Severity.INFO]} info", SEVERITY_STYLE[Severity.INFO])
    console.print(summary)


def _render(report: Report, console: Console, show_tables: bool, max_rows: int, depth: int) -> None:
    console.rule(Text(report.title, style="bold"), align="left")
    if report.own_findings:
        table = RichTable(show_lines=False, expand=True)
        table.add_column("severity", no_wrap=True)
        table.add_column("check", no_wrap=True)
        table.add_column("message / evidence / fix", ratio=1)
        for f in sorted(report.own_findings, key=lambda f: -f.severity.rank):
            body = Text(f.message)
            if f.evidence:
                body.append("\n" + _evidence_text(f.evidence), style="dim")
            if f.fix:
                body.append("\nfix: " + f.fix, style="green")
            if f.lesson:
                body.append(f"  (lesson {f.lesson})", style="dim")
            table.add_row(Text(f.severity.value, style=SEVERITY_STYLE[f.severity]), f.check, body)
        console.print(table)
    elif not report.sections:
        console.print(Text("no findings", style="green"))
    if report.checks:
        checks = RichTable(title="checks", expand=False)
        for col in ("check", "status", "reason"):
            checks.add_column(col)
        colours = {"passed": "green", "failed": "red", "skipped": "dim"}
        for c in report.checks:
            checks.add_row(c.check, Text(c.status, style=colours[c.status]), c.reason)
        console.print(checks)
    if show_tables:
        for t in report.tables:
            rt = RichTable(title=t.name, caption=t.caption or None)
            for col in t.columns:
                rt.add_column(str(col), overflow="fold")
            for row in t.rows[:max_rows]:
                rt.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
            if len(t.rows) > max_rows:
                rt.add_row(*(["..."] * len(t.columns)))
            console.print(rt)
    for section in report.sections:
        _render(section, console, show_tables, max_rows, depth + 1)
