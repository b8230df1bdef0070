"""``dldebug demo``: the embedded default scenario."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from dldebug.cli.common import FAIL_ON_OPTION, FailOn, console, exit_status


def command(
    out: Path = typer.Option(Path("dldebug-report"), "--out", help="Folder for index.html and report.json.",
                             file_okay=False),
    scenario: list[str] = typer.Option(None, "--scenario", help="Run only these scenarios (repeatable)."),
    quick: bool = typer.Option(False, "--quick", help="Shorter training (for a smoke test)."),
    fail_on: FailOn = FAIL_ON_OPTION,
) -> None:
    """Train the digits CNN on the CPU and write the demo report."""
    from dldebug.demo import SCENARIOS, run_demo
    from dldebug.report.console import render_console

    start = time.perf_counter()
    total = len(scenario) if scenario else len(SCENARIOS)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("demo", total=total)

        def progress(name: str, index: int, _total: int) -> None:
            bar.update(task, completed=index, description=f"scenario: {name}")

        report = run_demo(out, scenarios=scenario or None, quick=quick, progress=progress)
        bar.update(task, completed=total)
    render_console(report, console, show_tables=False)
    console.print(f"Report written to {out / 'index.html'} and {out / 'report.json'} "
                  f"in {time.perf_counter() - start:.1f} s")
    raise typer.Exit(exit_status(report, fail_on))
