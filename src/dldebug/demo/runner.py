"""Run the demo scenarios into one report: each scenario's lessons, status and time go into its section.

A scenario that raises is reported as a ``demo.failed`` error finding (with the end of its
traceback) and the rest still run; one whose optional extra is missing is ``demo.skipped``.
``report.json`` then says, in ``meta``, which lessons were exercised and which were not.
"""

from __future__ import annotations

import importlib
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from dldebug.demo.context import DemoContext
from dldebug.demo.scenarios import SCENARIOS, Scenario
from dldebug.errors import InputError, MissingDependencyError
from dldebug.findings import Finding, Report, Severity

__all__ = ["DemoEvent", "ScenarioStatus", "choose_scenarios", "run_demo", "run_scenario"]

ScenarioStatus = Literal["ok", "failed", "skipped"]
_OPTIONAL_MODULES = frozenset({"tensorflow", "tf_keras", "keras", "onnx", "onnxruntime", "onnxscript",
                               "transformers", "lightning", "pytorch_lightning", "tensorboard"})
_TRACEBACK_LINES = 12


@dataclass(frozen=True)
class DemoEvent:
    """What the demo tells its progress display: a scenario started, moved on, or finished."""

    scenario: str
    index: int
    total: int
    phase: Literal["start", "progress", "done"]
    fraction: float = 0.0
    status: ScenarioStatus | None = None
    seconds: float = 0.0


def choose_scenarios(scenarios: Sequence[str] | None) -> list[Scenario]:
    """The named scenarios in report order (all when ``scenarios`` is None); an unknown name is an InputError."""
    known = [s.name for s in SCENARIOS]
    chosen = list(known) if scenarios is None else list(dict.fromkeys(scenarios))
    unknown = [s for s in chosen if s not in known]
    if unknown:
        raise InputError(f"Unknown demo scenario(s) {unknown}; choose from {known}.")
    return [s for s in SCENARIOS if s.name in chosen]


def _with_meta(report: Report, **meta: Any) -> Report:
    return Report(report.own_findings, title=report.title, tables=report.tables, figures=report.figures,
                  sections=report.sections, checks=report.checks, meta={**report.meta, **meta})


def _is_missing_extra(exc: BaseException) -> bool:
    if isinstance(exc, MissingDependencyError):
        return True
    return isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in _OPTIONAL_MODULES


def run_scenario(scenario: Scenario, ctx: DemoContext) -> tuple[Report, ScenarioStatus]:
    """Run one scenario; a failure or a missing extra becomes a one-finding section instead of an exception."""
    module_name, _, func_name = scenario.target.partition(":")
    try:
        section: Report = getattr(importlib.import_module(module_name), func_name)(ctx)
        return section, "ok"
    except Exception as exc:  # one broken scenario must not stop the demo
        if _is_missing_extra(exc):
            hint = f" (pip install 'dldebug[{scenario.extra}]')" if scenario.extra else ""
            return Report([Finding("demo.skipped", Severity.INFO, f"scenario {scenario.name!r} skipped: {exc}{hint}",
                                   {"scenario": scenario.name, "extra": scenario.extra or ""})],
                          title=f"{scenario.name} (skipped)"), "skipped"
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
        tail = "".join(lines).strip().splitlines()[-_TRACEBACK_LINES:]
        return Report([Finding(
            "demo.failed", Severity.ERROR, f"scenario {scenario.name!r} failed: {type(exc).__name__}: {exc}",
            {"scenario": scenario.name, "error": type(exc).__name__, "traceback": "\n".join(tail)},
            fix="This is a dldebug bug, not a problem of your set-up: please report it with this traceback. "
                "The other scenarios ran.")], title=f"{scenario.name} (failed)"), "failed"


def run_demo(
    out_dir: str | Path = "dldebug-report",
    *,
    scenarios: Sequence[str] | None = None,
    quick: bool = False,
    seed: int = 0,
    progress: Callable[[DemoEvent], None] | None = None,
    threads: int | None = 1,
) -> Report:
    """Run the demo scenarios and write ``index.html`` and ``report.json`` into ``out_dir``.

    Args:
        out_dir: output folder (created if missing).
        scenarios: names from ``SCENARIOS`` to run (default: all), run in report order.
        quick: shorter training (every lesson is still exercised).
        seed: seeds every model and data order.
        progress: called with a :class:`DemoEvent` when a scenario starts, moves on and finishes.
        threads: torch's intra-op threads while the demo runs (restored after; None leaves them). The
            demo's models are tiny: on a busy 2-core machine two threads per operation spin against
            each other and made the quick demo 5x slower (141 s against 28 s, same load).

    Returns:
        The merged Report: one section per scenario, whose ``meta`` holds its ``scenario`` name,
        ``lessons``, ``status`` and ``seconds``; the report's ``meta`` lists ``lessons_exercised``.

    Raises:
        InputError: an unknown scenario name.
    """
    chosen = choose_scenarios(scenarios)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(chosen, Path(out_dir), quick=quick, seed=seed, progress=progress)
    finally:
        torch.set_num_threads(previous_threads)


def _run(chosen: list[Scenario], out: Path, *, quick: bool, seed: int,
         progress: Callable[[DemoEvent], None] | None) -> Report:
    ctx = DemoContext(out_dir=out, seed=seed, quick=quick)
    sections, statuses = [], {}
    start_all = time.perf_counter()
    for index, scenario in enumerate(chosen):
        def tell(phase: Literal["start", "progress", "done"], fraction: float = 0.0, status: ScenarioStatus | None
                 = None, seconds: float = 0.0, name: str = scenario.name, k: int = index) -> None:
            if progress is not None:
                progress(DemoEvent(name, k, len(chosen), phase, fraction, status, seconds))

        tell("start")
        ctx.on_progress = lambda fraction, tell=tell: tell("progress", fraction)
        started = time.perf_counter()
        section, status = run_scenario(scenario, ctx)
        seconds = time.perf_counter() - started
        ctx.timings[scenario.name] = seconds
        statuses[scenario.name] = status
        sections.append(_with_meta(section, scenario=scenario.name, lessons=list(scenario.lessons), status=status,
                                   seconds=round(seconds, 2)))
        tell("done", 1.0, status, seconds)
    exercised = sorted({n for s, sec in zip(chosen, sections, strict=True) if statuses[s.name] == "ok"
                        for n in (*s.lessons, *sec.lessons)})
    report = Report.merge(sections, title="dldebug demo report", meta={
        "scenarios": ", ".join(s.name for s in chosen), "quick": quick,
        "seconds": round(time.perf_counter() - start_all, 1),
        "lessons_exercised": exercised, "lessons_not_exercised": [n for n in range(1, 12) if n not in exercised],
        "failed": [name for name, st in statuses.items() if st == "failed"],
        "skipped": [name for name, st in statuses.items() if st == "skipped"],
        "scenario_seconds": {name: round(t, 2) for name, t in ctx.timings.items()}})
    report.save_json(out / "report.json")
    report.to_html(out / "index.html")
    return report
