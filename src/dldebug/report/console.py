"""Console renderer: a rich table of findings, coloured by severity; tables holding no finding fold to one line."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from dldebug.findings import Report, Severity, Table
from dldebug.report.relevance import finding_terms, holds_finding, nothing_to_say

__all__ = ["SEVERITY_STYLE", "render_console"]

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
                   max_rows: int = 20, all_tables: bool = False) -> None:
    """Print the report's findings (and its tables) to ``console``, then one summary line.

    Args:
        report: the report to print.
        console: where to print (a new stdout console by default).
        show_tables: print tables at all (a table holding no finding takes one line).
        max_rows: rows shown of a table printed in full.
        all_tables: print every table in full, even those holding no finding.
    """
    console = console or Console()
    _render(report, console, show_tables=show_tables, all_tables=all_tables, max_rows=max_rows)
    counts = {s: len(report.filter(severity=s)) for s in Severity}
    summary = Text(f"{len(report.findings)} finding(s): ")
    for k, severity in enumerate((Severity.ERROR, Severity.WARNING, Severity.INFO)):
        summary.append(("" if k == 0 else ", ") + f"{counts[severity]} {severity.value}", SEVERITY_STYLE[severity])
    if nothing_to_say(report):
        steps = report.step_count
        summary.append(" - no problem found" + (f" in {steps[0]:,} {steps[1]}" if steps else ""), "green")
    console.print(summary)


def _render(report: Report, console: Console, *, show_tables: bool, all_tables: bool, max_rows: int) -> None:
    console.rule(Text(report.title, style="bold"), align="left")
    if report.own_findings:
        console.print(_findings_table(report))
    elif not report.sections:
        steps = report.step_count
        console.print(Text("no findings" + (f" in {steps[0]:,} {steps[1]}" if steps else ""), style="green"))
    if report.checks:
        checks = RichTable(title="checks", expand=False)
        for col in ("check", "status", "reason"):
            checks.add_column(col)
        colours = {"passed": "green", "failed": "red", "skipped": "dim"}
        for c in report.checks:
            checks.add_row(c.check, Text(c.status, style=colours[c.status]), c.reason)
        console.print(checks)
    if show_tables:
        terms = finding_terms(report)
        for t in report.tables:
            if all_tables or holds_finding(t, terms):
                console.print(_rich_table(t, max_rows))
            else:
                console.print(Text(f"table {t.name}: {len(t.rows)} rows x {len(t.columns)} columns, "
                                   "holds no finding (--json or --html for all of it)", style="dim"))
    for section in report.sections:
        _render(section, console, show_tables=show_tables, all_tables=all_tables, max_rows=max_rows)


def _findings_table(report: Report) -> RichTable:
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
    return table


def _rich_table(t: Table, max_rows: int) -> RichTable:
    rt = RichTable(title=t.name, caption=t.caption or None)
    for col in t.columns:
        rt.add_column(str(col), overflow="fold")
    for row in t.rows[:max_rows]:
        rt.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    if len(t.rows) > max_rows:
        rt.add_row(*(["..."] * len(t.columns)))
    return rt
