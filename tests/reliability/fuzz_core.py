"""The fuzzing harness shared by the CI sample (``test_fuzz_*.py``) and ``benchmarks/bench_fuzz.py``.

A :class:`Target` draws cases from a Hypothesis strategy and feeds each one to a
public dldebug entry point. Exactly two outcomes are acceptable: a result that
passes the target's oracle, or a :class:`~dldebug.DldebugError`. Anything else
is a crash: another exception, a failed oracle (``AssertionError``: a wrong
result), or a case that runs past its time limit (a hang).

Crashes are tallied by *signature* -- the exception type and the innermost
frame inside ``src/dldebug`` (else the innermost frame) -- so one bug found ten
thousand times counts as one distinct crash, with its first case kept as the
reproducer.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from dldebug.errors import DldebugError

#: The folder of dldebug's sources: frames inside it name a crash's location.
_SOURCE_ROOT = str(Path(__import__("dldebug").__file__).parent)


@dataclass(frozen=True)
class Target:
    """One fuzzed entry point.

    Attributes:
        name: short id, e.g. ``"read_log.csv"``.
        owner: the module a crash is fixed in, e.g. ``"dldebug.curves"``.
        cases: the Hypothesis strategy producing one case per input.
        run: ``run(case, workdir)`` calls the entry point and asserts the oracle on its result.
        budget: inputs the benchmark tries by default.
        ci_examples: inputs the seed-fixed CI sample tries (a few seconds).
        timeout_s: a case running longer is a hang.
        from_bytes: wraps raw fuzzer bytes into a case (file readers only: atheris mutates bytes).
    """

    name: str
    owner: str
    cases: st.SearchStrategy[Any]
    run: Callable[[Any, Path], None]
    budget: int
    ci_examples: int = 60
    timeout_s: float = 30.0
    from_bytes: Callable[[bytes], Any] | None = None


@dataclass
class Crash:
    """One distinct crash: where it happened, its first case and how often it recurred."""

    signature: str
    error: str
    case: str
    traceback: str
    count: int = 1


@dataclass
class Tally:
    """What fuzzing one target produced."""

    target: str
    tried: int = 0
    accepted: int = 0
    refused: int = 0
    seconds: float = 0.0
    crashes: dict[str, Crash] = field(default_factory=dict)

    @property
    def crash_count(self) -> int:
        return sum(c.count for c in self.crashes.values())

    def summary(self) -> str:
        """Every distinct crash with its reproducer, for an assertion message."""
        lines = [f"{self.target}: {len(self.crashes)} distinct crash(es) in {self.tried} inputs"]
        for crash in self.crashes.values():
            lines += [f"- {crash.signature} x{crash.count}: {crash.error}", f"  case: {crash.case}",
                      "  " + crash.traceback.replace("\n", "\n  ")]
        return "\n".join(lines)


class CaseTimeout(BaseException):
    """Raised inside a case that ran past its limit (a BaseException, so no ``except Exception`` eats it)."""


def signature_of(exc: BaseException) -> str:
    """``Type@file:line`` of the innermost dldebug frame (else the innermost frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f.filename.startswith(_SOURCE_ROOT)]
    frame = (ours or frames or [None])[-1]
    where = "?" if frame is None else f"{_short(frame.filename)}:{frame.lineno}"
    return f"{type(exc).__name__}@{where}"


def _short(filename: str) -> str:
    if filename.startswith(_SOURCE_ROOT):
        return "dldebug/" + os.path.relpath(filename, _SOURCE_ROOT)
    return Path(filename).name


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def expire(_signum: int, _frame: Any) -> None:
        raise CaseTimeout(f"the case ran longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _scratch_root() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def attempt(target: Target, case: Any, tally: Tally) -> None:
    """Run one case and add its outcome to ``tally``."""
    workdir = Path(tempfile.mkdtemp(prefix="dldebug-fuzz-", dir=_scratch_root()))
    tally.tried += 1
    try:
        with _time_limit(target.timeout_s):
            target.run(case, workdir)
        tally.accepted += 1
    except DldebugError:
        tally.refused += 1
    except (Exception, CaseTimeout) as exc:  # everything else is what we hunt
        _record(tally, exc, case)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _record(tally: Tally, exc: BaseException, case: Any) -> None:
    key = signature_of(exc)
    if key in tally.crashes:
        tally.crashes[key].count += 1
        return
    text = repr(case)
    tally.crashes[key] = Crash(key, f"{type(exc).__name__}: {str(exc)[:300]}",
                               text if len(text) < 600 else text[:600] + "...",
                               "".join(traceback.format_exception(exc)[-6:]).strip())


def fuzz(target: Target, examples: int, *, random_seed: int | None = None,
         before_case: Callable[[Any], None] | None = None, tally: Tally | None = None) -> Tally:
    """Try ``examples`` cases of ``target``; reproducible: derandomized when ``random_seed`` is None (CI).

    ``before_case(case)`` runs before each case and ``tally`` collects the outcomes (the benchmark
    shares it with a progress file its parent reads).
    """
    tally = tally if tally is not None else Tally(target.name)

    @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=random_seed is None, print_blob=False)
    @given(target.cases)
    def body(case: Any) -> None:
        if before_case is not None:
            before_case(case)
        attempt(target, case, tally)

    start = time.perf_counter()
    (body if random_seed is None else seed(random_seed)(body))()
    tally.seconds = time.perf_counter() - start
    return tally
