"""Real multi-process runs (gloo on CPU): rank 0's report names the rank where a problem began; nothing hangs.

Two framework set-ups: Lightning's ``Trainer(strategy="ddp", devices=2, accelerator="cpu")`` and a Hugging
Face Trainer under ``torchrun --nproc_per_node 2`` (plain DDP with ``with TrainingMonitor(...)`` is in
test_faults.py). In each, rank 1 either goes NaN or raises; every process must end
within the time limit (a hang fails the test), and rank 0 writes one report and logs one summary.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dldebug import Report

HERE = Path(__file__).parent
LIMIT = 240  # seconds for a whole multi-process run; a hang ends the test as a failure
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(command: list[str]) -> tuple[int, str]:
    proc = subprocess.run(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=LIMIT, check=False)
    return proc.returncode, proc.stdout


def saved(out: Path) -> Report:
    return Report.from_json((out / "report" / "report.json").read_text())


def lightning(out: Path, mode: str) -> tuple[int, str]:
    pytest.importorskip("lightning.pytorch")
    return run([sys.executable, str(HERE / "lightning_ddp_worker.py"), str(out), mode])


@pytest.mark.distributed
def test_lightning_ddp_nan_on_rank_one_reaches_rank_zero(tmp_path: Path) -> None:
    code, log = lightning(tmp_path, "nan")
    assert code == 0, log
    report = saved(tmp_path)
    nan = report.get("loss.nonfinite")
    assert nan is not None and (nan.evidence["rank"], nan.evidence["step"]) == (1, 6), report.findings
    culprit = report.get("monitor.nonfinite_module")
    assert culprit.evidence["rank"] == 1 and culprit.evidence["where"] == "output"  # the NaN input's first layer
    assert culprit.evidence["module"] == "net.features.0"
    assert log.count("dldebug: 2 problem(s) found in 12 steps") == 1


@pytest.mark.distributed
def test_lightning_ddp_a_rank_that_raises_is_named(tmp_path: Path) -> None:
    code, log = lightning(tmp_path, "raise")
    assert code != 0 and "injected failure at step 6" in log
    failed = saved(tmp_path).get("monitor.run_failed")
    assert failed is not None and failed.evidence["rank"] == 1, log
    assert log.count("problem(s) found in") == 1


def huggingface(out: Path, mode: str) -> tuple[int, str]:
    pytest.importorskip("transformers")
    return run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(free_port()), str(HERE / "hf_ddp_worker.py"), str(out), mode])


@pytest.mark.distributed
def test_huggingface_torchrun_nan_on_rank_one_reaches_rank_zero(tmp_path: Path) -> None:
    code, log = huggingface(tmp_path, "nan")
    assert code == 0, log
    report = saved(tmp_path)
    nan = report.get("loss.nonfinite")
    assert nan is not None and (nan.evidence["rank"], nan.evidence["step"]) == (1, 3), report.findings
    assert report.get("monitor.nonfinite_module").evidence["module"] == "classifier"
    assert log.count("dldebug: 2 problem(s) found in 8 steps") == 1


@pytest.mark.distributed
def test_huggingface_torchrun_a_rank_that_raises_does_not_hang(tmp_path: Path) -> None:
    code, log = huggingface(tmp_path, "raise")  # the Trainer has no exception event: no summary, but no hang
    assert code != 0 and "injected failure on rank 1" in log
