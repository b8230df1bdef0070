"""Two real processes (gloo on CPU): rank 0's report names the rank where the NaN appeared."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dldebug import Report

WORKER = Path(__file__).with_name("ddp_worker.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.distributed
def test_rank_zero_names_the_rank_that_went_nonfinite(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(rank), "2", str(port), str(out)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    logs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    report = Report.from_json(out.read_text())
    nan = report.get("loss.nonfinite")
    assert nan is not None
    assert (nan.evidence["rank"], nan.evidence["step"], nan.evidence["world_size"]) == (1, 6, 2)
    assert nan.evidence["ranks"] == "0,1"  # rank 0 caught it one step later, through the all-reduce
    assert nan.message.startswith("rank 1: the loss became nan at step 6")
    culprit = report.get("monitor.nonfinite_module")
    assert culprit is not None and culprit.evidence["rank"] == 1 and culprit.evidence["module"] == "0"
    assert report.meta["world_size"] == 2
