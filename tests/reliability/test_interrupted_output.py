"""SIGKILL of the CLI while it writes a report leaves the old report or the new one, never a partial file.

To kill *during* the write for certain, the child process throttles every write into the output
folder (whatever way the file was opened: ``open``, ``os.fdopen``) and signals when the first bytes
are out; the parent then sends SIGKILL. A second test kills at spread-out moments of a normal run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import dldebug
from dldebug.findings import Finding, Report, Severity, Table

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

THROTTLE = '''
import builtins, os, time
OUT = os.environ["DLDEBUG_TEST_OUT_DIR"]
MARK = os.environ["DLDEBUG_TEST_WRITING"]

class Slow:
    def __init__(self, handle):
        self._handle = handle
    def write(self, data):
        view = memoryview(data if isinstance(data, (bytes, bytearray)) else data.encode())
        for start in range(0, len(view), 4096):
            self._handle.write(view[start:start + 4096] if isinstance(data, (bytes, bytearray))
                               else bytes(view[start:start + 4096]).decode(errors="ignore"))
            self._handle.flush()
            open(MARK, "w").close()
            time.sleep(0.01)
        return len(data)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self._handle.__exit__(*exc)
    def __getattr__(self, name):
        return getattr(self._handle, name)

def _inside(path):
    try:
        return os.path.realpath(path).startswith(os.path.realpath(OUT) + os.sep)
    except (TypeError, ValueError):
        return False

_open, _fdopen = builtins.open, os.fdopen

def slow_open(file, mode="r", *args, **kwargs):
    handle = _open(file, mode, *args, **kwargs)
    return Slow(handle) if any(m in mode for m in "wax") and _inside(file) else handle

def slow_fdopen(fd, mode="r", *args, **kwargs):
    handle = _fdopen(fd, mode, *args, **kwargs)
    return Slow(handle) if any(m in mode for m in "wax") and _inside(f"/proc/self/fd/{fd}") else handle

builtins.open, os.fdopen = slow_open, slow_fdopen
'''


def _big_report(path: Path) -> Path:
    """A report whose HTML is a few MB: many findings and a large table."""
    findings = [Finding(f"demo.check_{i}", Severity.WARNING, f"finding {i} " + "x" * 200, {"i": i})
                for i in range(300)]
    rows = tuple((i, float(v), "y" * 40) for i, v in enumerate(np.linspace(0, 1, 20_000)))
    Report(findings, title="big", tables=(Table("big table", ("i", "value", "text"), rows),)).save_json(path)
    return path


def _command(kind: str, folder: Path) -> list[str]:
    if kind == "show":
        return ["show", str(_big_report(folder / "big.json")), "--json", "--html", str(folder / "out" / "r.html")]
    log = folder / "log.csv"
    log.write_text("step,loss\n" + "".join(f"{i},{2.3 * np.exp(-i / 5000) + 0.01 * np.sin(i)}\n"
                                         for i in range(200_000)))
    return ["curve", str(log), "--json", "--html", str(folder / "out" / "r.html")]


def _env(folder: Path, throttle: bool) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(Path(dldebug.__file__).parents[1]), "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": "1", "DLDEBUG_TEST_OUT_DIR": str(folder / "out"),
           "DLDEBUG_TEST_WRITING": str(folder / "writing")}
    if throttle:
        (folder / "inject").mkdir(exist_ok=True)
        (folder / "inject" / "sitecustomize.py").write_text(THROTTLE)
        env["PYTHONPATH"] = f"{folder / 'inject'}{os.pathsep}{env['PYTHONPATH']}"
    return env


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "dldebug.cli.app", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


OLD = b"<!DOCTYPE html><html><body>the previous report</body></html>\n"


def _same_report(a: bytes, b: bytes) -> bool:
    """Equal up to what matplotlib varies per run: SVG ids (a random salt) and the ``dc:date`` metadata."""
    def strip(data: bytes) -> bytes:
        return re.sub(rb"<dc:date>[^<]*</dc:date>|[0-9a-f]{8,}", b"", data)

    return strip(a) == strip(b)


@pytest.mark.parametrize("kind", ["show", "curve"])
def test_sigkill_mid_write_keeps_the_old_report(tmp_path: Path, kind: str) -> None:
    argv = _command(kind, tmp_path)
    target = tmp_path / "out" / "r.html"
    target.parent.mkdir()
    target.write_bytes(OLD)
    proc = _start(argv, _env(tmp_path, throttle=True))
    deadline = time.monotonic() + 120
    while not (tmp_path / "writing").exists():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the CLI never started writing"
        time.sleep(0.01)
    time.sleep(0.05)  # several chunks are out: the kill lands inside the write
    assert proc.poll() is None, "the throttled write finished before the kill"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == OLD, "a killed write damaged the report"
    leftovers = [p.name for p in target.parent.iterdir() if p.name != target.name]
    assert all(name.startswith(".r.html.") and name.endswith(".tmp") for name in leftovers), leftovers


@pytest.mark.parametrize("kind", ["show", "curve"])
def test_sigkill_at_any_moment_leaves_old_or_complete_new(tmp_path: Path, kind: str) -> None:
    argv = _command(kind, tmp_path)
    target = tmp_path / "out" / "r.html"
    env = _env(tmp_path, throttle=False)
    start = time.monotonic()
    reference = subprocess.run([sys.executable, "-m", "dldebug.cli.app", *argv], env=env, capture_output=True,
                               timeout=300, check=False)
    duration = time.monotonic() - start
    assert reference.returncode == 0, reference.stderr.decode()[-1000:]
    new = target.read_bytes()
    assert new.rstrip().endswith(b"</html>")
    outcomes = []
    for fraction in (0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0):
        target.write_bytes(OLD)
        proc = _start(argv, env)
        time.sleep(duration * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        content = target.read_bytes()
        assert content == OLD or _same_report(content, new), \
            f"partial report after a kill at {fraction:.0%}: {len(content)} of {len(new)} bytes"
        outcomes.append("old" if content == OLD else "new")
    assert "old" in outcomes  # at least one kill landed before the rename (the test exercised something)
