"""``dldebug demo``: every lesson's scenario on the embedded digits data, one progress bar per scenario."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable
from rich.text import Text

from dldebug.cli.common import FAIL_ON_OPTION, FailOn, console, err_console, exit_status
from dldebug.findings import Report, Severity

_STATUS_STYLE = {"ok": "green", "failed": "bold red", "skipped": "dim"}


def command(
    out: Path = typer.Option(Path("dldebug-report"), "--out", help="Folder for index.html and report.json.",
                             file_okay=False),
    scenario: list[str] = typer.Option(None, "--scenario", help="Run only these scenarios (repeatable)."),
    quick: bool = typer.Option(False, "--quick", help="Shorter training; every lesson is still exercised."),
    fail_on: FailOn = FAIL_ON_OPTION,
) -> None:
    """Train digits models on the CPU, run every lesson's scenario and write the demo report.

    Exits 3 (after writing the report) when a scenario failed, since that is a dldebug bug.
    """
    from dldebug.demo import SCENARIOS, DemoEvent, run_demo
    from dldebug.demo.runner import choose_scenarios

    start = time.perf_counter()
    chosen = choose_scenarios(scenario or None)
    lessons = {s.name: s.lessons for s in SCENARIOS}
    with Progress(TextColumn("{task.description:<20}"), BarColumn(bar_width=30),
                  TextColumn("{task.percentage:>4.0f}%"), TextColumn("{task.fields[status]:<8}"),
                  TimeElapsedColumn(), console=console, transient=False) as bar:
        tasks: dict[str, TaskID] = {s.name: bar.add_task(s.name, total=1.0, start=False, status="waiting")
                                    for s in chosen}

        def progress(event: DemoEvent) -> None:
            task = tasks[event.scenario]
            if event.phase == "start":
                bar.start_task(task)
                bar.update(task, status="running")
            elif event.phase == "progress":
                bar.update(task, completed=event.fraction)
            else:
                bar.update(task, completed=1.0, status=event.status or "")
                bar.stop_task(task)

        report = run_demo(out, scenarios=[s.name for s in chosen], quick=quick, progress=progress)
    console.print(_summary_table(report, lessons))
    exercised = report.meta.get("lessons_exercised", [])
    missing = report.meta.get("lessons_not_exercised", [])
    console.print(f"Lessons exercised: {', '.join(map(str, exercised)) or 'none'}"
                  + (f"; not exercised: {', '.join(map(str, missing))}" if missing else " (all eleven)"),
                  soft_wrap=True)
    console.print(f"Report written to {out / 'index.html'} and {out / 'report.json'} "
                  f"in {time.perf_counter() - start:.1f} s", soft_wrap=True)
    failed = report.meta.get("failed", [])
    if failed:
        err_console.print(Text.assemble(("internal error: ", "bold red"),
                                        f"scenario(s) {', '.join(failed)} failed (see demo.failed in the report); "
                                        "the others ran. This is a bug in dldebug: please report it."))
        raise typer.Exit(3)
    raise typer.Exit(exit_status(report, fail_on))


def _summary_table(report: Report, lessons: dict[str, tuple[int, ...]]) -> RichTable:
    table = RichTable(title="dldebug demo", expand=False)
    for column in ("scenario", "lessons", "status", "seconds", "error", "warning", "info"):
        table.add_column(column, justify="right" if column in ("seconds", "error", "warning", "info") else "left")
    for section in report.sections:
        name = str(section.meta.get("scenario", section.title))
        status = str(section.meta.get("status", "ok"))
        counts = [str(len(section.filter(severity=s))) for s in (Severity.ERROR, Severity.WARNING, Severity.INFO)]
        table.add_row(name, ", ".join(map(str, lessons.get(name, ()))) or "-",
                      Text(status, style=_STATUS_STYLE.get(status, "")), f"{section.meta.get('seconds', 0):.1f}",
                      *counts)
    return table
