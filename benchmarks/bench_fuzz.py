"""Fuzz every reader and public entry point; report inputs tried and crashes per target.

Run (from the repository root; outside CI, tens of minutes at --scale 1):

    PYTHONPATH=src .venv/bin/python benchmarks/bench_fuzz.py [--scale 1.0] [--seed 0] [--target NAME ...]
        [--engine hypothesis|atheris|both] [--markdown OUT.md]

The targets are the ones of ``tests/reliability/fuzz_*.py`` (the CI runs a seed-fixed sample of
each). Hypothesis generates structured cases (valid files then damaged, wild arguments); with
``--engine atheris`` the byte-level readers are also fuzzed coverage-guided by atheris/libFuzzer,
starting from pristine files. Each target runs in its own process with an 8 GiB address-space
limit, so a crash of the interpreter, a hang or a runaway allocation counts against that target
and the run goes on. A crash is anything but a correct result or a DldebugError (see
``tests/reliability/fuzz_core.py``); distinct crashes are grouped by exception type and location.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reliability"))
MEMORY_LIMIT = 8 * 2**30
RESULT_MARK = "FUZZ-RESULT "


def _targets() -> dict[str, Any]:
    from fuzz_api import API_TARGETS
    from fuzz_files import FILE_TARGETS
    from fuzz_logs import LOG_TARGETS

    return {t.name: t for t in (*LOG_TARGETS, *FILE_TARGETS, *API_TARGETS)}


def _quiet() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import warnings

    warnings.simplefilter("ignore")
    try:
        import onnxruntime

        onnxruntime.set_default_logger_severity(3)
    except ImportError:
        pass


def _emit(tally: Any, engine: str) -> None:
    record = asdict(tally)
    record["engine"] = engine
    print(RESULT_MARK + json.dumps(record), flush=True)


class _Progress:
    """The worker's tally and running case, written to a file after every case for the parent to read.

    A case stuck in native code can hold the GIL, so no thread of the worker can notice it: the parent
    watches this file and kills the worker, keeping the counts and the stuck case as a hang.
    """

    def __init__(self, tally: Any, path: str, engine: str) -> None:
        self.tally, self.path, self.engine = tally, path, engine

    def write(self, case: Any | None) -> None:
        """Record the tally so far and the case about to run."""
        record = {"tried": self.tally.tried, "accepted": self.tally.accepted, "refused": self.tally.refused,
                  "crashes": {k: asdict(c) for k, c in self.tally.crashes.items()},
                  "case": None if case is None else repr(case)[:600], "since": time.time()}
        Path(self.path + ".tmp").write_text(json.dumps(record))
        os.replace(self.path + ".tmp", self.path)


def hypothesis_worker(name: str, examples: int, seed: int, progress_path: str) -> None:
    from fuzz_core import Tally, fuzz

    _quiet()
    tally = Tally(name)
    progress = _Progress(tally, progress_path, "hypothesis")
    _emit(fuzz(_targets()[name], examples, random_seed=seed, before_case=progress.write, tally=tally), "hypothesis")


def atheris_worker(name: str, examples: int, seed: int, progress_path: str) -> None:
    """Coverage-guided byte fuzzing of one file reader, seeded with pristine files from its generator."""
    import atheris

    with atheris.instrument_imports(include=["dldebug"]):
        import dldebug.curves
        import dldebug.io
        import dldebug.untrusted  # noqa: F401  (imported for instrumentation)
    from fuzz_core import Tally, attempt
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    _quiet()
    target = _targets()[name]
    corpus = Path(tempfile.mkdtemp(prefix="dldebug-atheris-"))
    tally, start = Tally(name), time.perf_counter()
    progress = _Progress(tally, progress_path, "atheris")

    @hypothesis_seed(seed)
    @settings(max_examples=30, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck),
              deadline=None)
    @given(target.cases)
    def collect(case: Any) -> None:
        file_case = case[0] if isinstance(case, tuple) else case
        for index, (_, data) in enumerate(file_case.files):
            (corpus / f"seed{len(list(corpus.iterdir()))}_{index}").write_bytes(data)

    collect()

    def one_input(data: bytes) -> None:
        case = target.from_bytes(data)
        progress.write(case)
        attempt(target, case, tally)
        if tally.tried >= examples:
            tally.seconds = time.perf_counter() - start
            _emit(tally, "atheris")
            os._exit(0)  # libFuzzer would otherwise keep going

    atheris.Setup([sys.argv[0], f"-seed={seed + 1}", "-max_len=8192", "-rss_limit_mb=8192", "-timeout=120",
                   f"-runs={examples * 4}", str(corpus)], one_input)
    atheris.Fuzz()


def run_target(name: str, examples: int, seed: int, engine: str) -> dict[str, Any]:
    """One target in fresh processes; after a hang, the rest of the budget runs with the next seed."""
    merged: dict[str, Any] = {"target": name, "engine": engine, "tried": 0, "accepted": 0, "refused": 0,
                              "seconds": 0.0, "crashes": {}}
    for restart in range(5):
        result = _run_worker(name, examples - merged["tried"], seed + 1000 * restart, engine)
        for key in ("tried", "accepted", "refused", "seconds"):
            merged[key] += result[key]
        for signature, crash in result["crashes"].items():
            if signature in merged["crashes"]:
                merged["crashes"][signature]["count"] += crash["count"]
            else:
                merged["crashes"][signature] = crash
        stopped = any(s.startswith(("Hang", "process")) for s in result["crashes"])
        if merged["tried"] >= examples or not stopped:
            break
    return merged


def _run_worker(name: str, examples: int, seed: int, engine: str) -> dict[str, Any]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "3"}
    progress = Path(tempfile.mkdtemp(prefix="dldebug-fuzz-progress-")) / "progress.json"
    command = [sys.executable, __file__, "--worker", name, "--examples", str(examples), "--seed", str(seed),
               "--engine", engine, "--progress", str(progress)]
    start = time.perf_counter()
    hang_limit = 2 * _targets()[name].timeout_s + 10
    with tempfile.TemporaryFile("w+") as out, subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                                                 text=True, env=env, preexec_fn=limit) as proc:
        while proc.poll() is None:
            time.sleep(1)
            state = _read_progress(progress)
            if state and state["case"] is not None and time.time() - state["since"] > hang_limit:
                proc.kill()
                proc.wait()
                return _hang_result(name, engine, state, time.perf_counter() - start)
        out.seek(0)
        lines = out.read().splitlines()
    for line in reversed(lines):
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] = json.loads(line[len(RESULT_MARK):])
            return result
    state = _read_progress(progress) or {"tried": 0, "accepted": 0, "refused": 0, "crashes": {}, "case": "?"}
    state["crashes"][f"process exit {proc.returncode}"] = {
        "signature": f"process exit {proc.returncode}", "error": " / ".join(lines[-3:]), "case": state["case"],
        "traceback": "", "count": 1}
    return {"target": name, "engine": engine, "seconds": time.perf_counter() - start,
            **{k: state[k] for k in ("tried", "accepted", "refused", "crashes")}}


def _read_progress(path: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state


def _hang_result(name: str, engine: str, state: dict[str, Any], seconds: float) -> dict[str, Any]:
    crashes = dict(state["crashes"])
    crashes["Hang"] = {"signature": "Hang", "error": "the case never returned (stuck in native code; killed)",
                       "case": state["case"], "traceback": "", "count": 1}
    return {"target": name, "engine": engine, "tried": state["tried"] + 1, "accepted": state["accepted"],
            "refused": state["refused"], "seconds": seconds, "crashes": crashes}  # + 1: the stuck case


def table(results: list[dict[str, Any]], owners: dict[str, str]) -> str:
    lines = ["| target | owner | engine | inputs | accepted | refused (DldebugError) | distinct crashes | "
             "crashing inputs | seconds |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        crashes = r["crashes"].values()
        lines.append(f"| {r['target']} | {owners.get(r['target'], '?')} | {r['engine']} | {r['tried']:,} | "
                     f"{r['accepted']:,} | {r['refused']:,} | {len(r['crashes'])} | "
                     f"{sum(c['count'] for c in crashes):,} | {r['seconds']:.0f} |")
    tried = sum(r["tried"] for r in results)
    distinct = sum(len(r["crashes"]) for r in results)
    lines.append(f"| **all** | | | **{tried:,}** | {sum(r['accepted'] for r in results):,} | "
                 f"{sum(r['refused'] for r in results):,} | **{distinct}** | "
                 f"{sum(c['count'] for r in results for c in r['crashes'].values()):,} | "
                 f"{sum(r['seconds'] for r in results):.0f} |")
    details = [f"- `{r['target']}` {c['signature']} x{c['count']}: {c['error'][:200]}\n  case: `{c['case'][:300]}`"
               for r in results for c in r["crashes"].values()]
    return "\n".join(lines + (["", *details] if details else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every target's input budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", action="append", help="only these targets (repeatable)")
    parser.add_argument("--engine", choices=["hypothesis", "atheris", "both"], default="hypothesis")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--examples", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--progress", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker = atheris_worker if args.engine == "atheris" else hypothesis_worker
        worker(args.worker, args.examples, args.seed, args.progress)
        return
    if args.engine in ("atheris", "both") and importlib.util.find_spec("atheris") is None:
        parser.error(f"--engine {args.engine} needs atheris, which is not installed: "
                     ".venv/bin/pip install -c requirements/constraints.txt atheris (or --engine hypothesis)")
    targets = _targets()
    names = args.target or list(targets)
    results, start = [], time.perf_counter()
    for name in names:
        target = targets[name]
        engines = {"hypothesis": ["hypothesis"], "atheris": ["atheris"], "both": ["hypothesis", "atheris"]}
        for engine in engines[args.engine]:
            if engine == "atheris" and target.from_bytes is None:
                continue
            result = run_target(name, max(1, int(target.budget * args.scale)), args.seed, engine)
            results.append(result)
            print(f"{name} [{engine}]: {result['tried']:,} inputs, {len(result['crashes'])} distinct crash(es), "
                  f"{result['seconds']:.0f} s", flush=True)
    text = table(results, {name: t.owner for name, t in targets.items()})
    text += f"\n\nWall time: {time.perf_counter() - start:.0f} s, seed {args.seed}, scale {args.scale}."
    print("\n" + text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
