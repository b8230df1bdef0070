"""``dldebug demo``: train the digits CNN and run every scenario into one report."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from dldebug.demo.context import DemoContext
from dldebug.demo.scenarios import SCENARIOS
from dldebug.errors import InputError
from dldebug.findings import Finding, Report, Severity

__all__ = ["SCENARIOS", "DemoContext", "run_demo"]


def run_demo(
    out_dir: str | Path = "dldebug-report",
    *,
    scenarios: Sequence[str] | None = None,
    quick: bool = False,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
) -> Report:
    """Run the demo scenarios and write ``index.html`` and ``report.json`` into ``out_dir``.

    Args:
        out_dir: output folder (created if missing).
        scenarios: names from ``SCENARIOS`` to run (default: all).
        quick: shorter training, for tests.
        progress: called with (scenario name, index, total) before each scenario.

    Returns:
        The merged Report, one section per scenario.
    """
    known = [name for name, _ in SCENARIOS]
    chosen = list(known) if scenarios is None else list(scenarios)
    unknown = [s for s in chosen if s not in known]
    if unknown:
        raise InputError(f"Unknown demo scenario(s) {unknown}; choose from {known}.")
    ctx = DemoContext(out_dir=Path(out_dir), seed=seed, quick=quick)
    sections = []
    for index, (name, target) in enumerate((n, t) for n, t in SCENARIOS if n in chosen):
        if progress is not None:
            progress(name, index, len(chosen))
        module_name, _, func_name = target.partition(":")
        start = time.perf_counter()
        try:
            section = getattr(importlib.import_module(module_name), func_name)(ctx)
        except ImportError as exc:  # an optional extra is missing: the rest of the demo still runs
            section = Report([Finding("demo.skipped", Severity.INFO, f"scenario {name!r} skipped: {exc}",
                                      {"scenario": name})], title=name)
        ctx.timings[name] = time.perf_counter() - start
        sections.append(section)
    report = Report.merge(sections, title="dldebug demo report",
                          meta={"scenarios": ", ".join(chosen), "seconds": round(sum(ctx.timings.values()), 1)})
    out = Path(out_dir)
    report.save_json(out / "report.json")
    report.to_html(out / "index.html")
    return report
