"""Issue 17: fault injection in monitored training loops. The loop never crashes (unless strict=True)
and every failure becomes a finding.

Faults: an exception inside each piece of the monitor, hooks that see non-tensors, models with
tuple/dict/dataclass outputs, in-place operations, gradient checkpointing, bf16 autocast on the
CPU and torch.compile'd models (with a NaN injected where the model should be named), and a
2-rank DDP run (gloo, two processes) where rank 1 goes NaN or raises.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import subprocess
import sys
from collections import namedtuple
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import dldebug.curves
from dldebug import Report, TrainingCheckError, TrainingMonitor
from dldebug.monitor import monitor as monitor_module
from dldebug.monitor import probes, reporting


def loop(model: nn.Module, monitor: TrainingMonitor, steps: int = 60, *, nan_at: int | None = None,
         forward: Callable[[nn.Module, torch.Tensor], Any] | None = None,
         logits_of: Callable[[Any], torch.Tensor] = lambda out: out) -> list[float]:
    """SGD on a learnable 3-class problem; ``nan_at`` puts a NaN in the input at that step."""
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for step in range(steps):
        x = torch.randn(32, 6, generator=gen)
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
        if step == nan_at:
            x[0, 0] = math.nan
        out = forward(model, x) if forward is not None else model(x)
        logits = logits_of(out)
        loss = nn.functional.cross_entropy(logits.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        monitor.observe(loss, logits=out, targets=y, lr=0.1)
        losses.append(loss.item())
    return losses


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected")


# -- an exception inside every piece of the monitor ------------------------------------------------------
FAULTS = {  # where to inject -> the "where" the internal_error finding names
    "forward hook": (probes, "first_tensor"),
    "logit statistics": (monitor_module, "logit_statistics"),
    "observe": (probes.ModuleProbe, "snapshot"),
    "diagnose_curve": (dldebug.curves, "diagnose_curve"),
    "report": (reporting, "judge_overconfidence"),
}


@pytest.mark.parametrize("where", list(FAULTS))
def test_an_exception_in_the_monitor_never_reaches_the_loop(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    target, name = FAULTS[where]
    model = OddOutputs()  # modules whose outputs the hook has to look inside
    monitor = TrainingMonitor(model, every=2)
    monkeypatch.setattr(target, name, boom)
    losses = loop(model, monitor)
    report = monitor.report()
    error = report.get("monitor.internal_error")
    assert error is not None and error.evidence["where"] == where
    assert error.evidence["first_error"] == "RuntimeError: injected"
    assert losses[-1] < losses[0]  # training went on, and learned
    assert monitor.losses.column("loss") == losses  # every loss was still recorded


@pytest.mark.parametrize("where", ["forward hook", "logit statistics", "observe"])
def test_strict_mode_lets_the_monitor_failure_through(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    target, name = FAULTS[where]
    model = OddOutputs()
    monkeypatch.setattr(target, name, boom)
    with pytest.raises(RuntimeError, match="injected"):
        loop(model, TrainingMonitor(model, every=1, strict=True), steps=3)


def test_a_failing_nan_search_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    model = net()
    monitor = TrainingMonitor(model, every=5)
    monkeypatch.setattr(probes.ModuleProbe, "forensics", boom)
    loop(model, monitor, steps=20, nan_at=10)
    report = monitor.report()
    assert report.get("loss.nonfinite").evidence["step"] == 10  # recorded before the search failed
    assert report.get("monitor.internal_error").evidence["first_error"] == "RuntimeError: injected"


# -- hooks that see odd values; models with structured outputs -------------------------------------------
class OddOutputs(nn.Module):
    """Sub-modules that return None, text, ints, lists and objects besides the real path."""

    def __init__(self) -> None:
        super().__init__()
        self.body = net()
        self.nothing = _Returns(None)
        self.text = _Returns("a string")
        self.numbers = _Returns([1, 2, {"k": 3}])
        self.ints = _Returns(torch.arange(3))  # an integer tensor: not a NaN candidate
        self.thing = _Returns(object())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for odd in (self.nothing, self.text, self.numbers, self.ints, self.thing):
            odd(x)
        return self.body(x)


class _Returns(nn.Module):
    def __init__(self, value: Any) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))  # owns a parameter: it is watched
        self.value = value

    def forward(self, x: torch.Tensor) -> Any:
        return self.value


def test_hooks_that_see_non_tensors() -> None:
    model = OddOutputs()
    monitor = TrainingMonitor(model, every=1)
    loop(model, monitor, steps=30, nan_at=20)
    report = monitor.report()
    assert not report.has("monitor.internal_error")
    culprit = report.get("monitor.nonfinite_module")
    assert culprit is not None and culprit.evidence["module"] == "body.0" and culprit.evidence["step"] == 20


@dataclasses.dataclass
class Out:
    logits: torch.Tensor
    hidden: torch.Tensor


Pair = namedtuple("Pair", ["hidden", "logits"])


class Structured(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind, self.body = kind, net()

    def forward(self, x: torch.Tensor) -> Any:
        logits = self.body(x)
        return {"tuple": lambda: (logits, x), "dict": lambda: {"logits": logits, "mask": x > 0},
                "dataclass": lambda: Out(logits, x), "namedtuple": lambda: Pair(x, logits)}[self.kind]()


@pytest.mark.parametrize("kind", ["tuple", "dict", "dataclass", "namedtuple"])
def test_models_with_structured_outputs(kind: str) -> None:
    model = Structured(kind)
    spec = {"tuple": 0, "namedtuple": "logits"}.get(kind)  # dict and dataclass: "logits" is found by name
    monitor = TrainingMonitor(model, every=1, output=spec)
    pick = {"tuple": lambda o: o[0], "dict": lambda o: o["logits"], "dataclass": lambda o: o.logits,
            "namedtuple": lambda o: o.logits}[kind]
    loop(model, monitor, steps=30, nan_at=20, logits_of=pick)
    report = monitor.report()
    assert not report.has("monitor.internal_error"), report.findings
    assert len(monitor.logits) == 30 and np.isfinite(monitor.logits.rows[19]).all()  # logits found every step ...
    assert report.get("monitor.nonfinite_module").evidence["module"] == "body.0"  # ... and the NaN's origin


# -- in-place ops, gradient checkpointing, bf16 autocast, torch.compile -----------------------------------
class InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.act, self.last = nn.Linear(6, 16), nn.ReLU(inplace=True), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.first(x))  # overwrites the output the monitor keeps for 'first'
        h = h * 1.0
        h.add_(0.0)  # and an in-place op on an intermediate tensor
        return self.last(h)


def test_in_place_operations() -> None:
    torch.manual_seed(0)
    model, plain = InPlace(), InPlace()
    plain.load_state_dict(model.state_dict())
    monitor = TrainingMonitor(model, every=1, layer_stats=True)
    assert loop(model, monitor, steps=30, nan_at=20) == pytest.approx(loop(plain, TrainingMonitor(), steps=30,
                                                                            nan_at=20), nan_ok=True)
    report = monitor.report()
    assert report.get("monitor.nonfinite_module").evidence["module"] == "first"
    assert not report.has("monitor.internal_error")


class Checkpointed(nn.Module):
    def __init__(self, reentrant: bool) -> None:
        super().__init__()
        self.block, self.head, self.reentrant = net()[:2], nn.Linear(16, 3), reentrant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(checkpoint(self.block, x.requires_grad_(self.reentrant), use_reentrant=self.reentrant))


@pytest.mark.parametrize("reentrant", [False, True])
def test_gradient_checkpointing(reentrant: bool) -> None:
    model = Checkpointed(reentrant)
    monitor = TrainingMonitor(model, every=1, layer_stats=True)
    losses = loop(model, monitor, steps=30, nan_at=20)
    report = monitor.report()
    assert not report.has("monitor.internal_error")
    assert report.get("loss.nonfinite").evidence["step"] == 20 and losses[5] < losses[0]
    assert report.get("monitor.nonfinite_module").evidence["module"] == "block.0"


def test_bf16_autocast_on_the_cpu() -> None:
    model = net()
    monitor = TrainingMonitor(model, every=1, layer_stats=True)

    def forward(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return m(x)

    losses = loop(model, monitor, steps=30, nan_at=20, forward=forward)
    report = monitor.report()
    assert not report.has("monitor.internal_error")
    assert monitor.logits.rows[0][1] == pytest.approx(monitor.logits.rows[0][1])  # bf16 logits measured
    assert report.get("monitor.nonfinite_module").evidence["module"] == "0" and losses[10] < losses[0]


def test_torch_compiled_model() -> None:
    torch._dynamo.reset()
    model = net()
    monitor = TrainingMonitor(model, every=1)
    compiled = torch.compile(model, backend="aot_eager")
    loop(model, monitor, steps=30, nan_at=20, forward=lambda m, x: compiled(x))
    report = monitor.report()
    assert report.get("loss.nonfinite").evidence["step"] == 20
    assert not report.has("monitor.internal_error")
    culprit = report.get("monitor.nonfinite_module")
    assert culprit is not None and culprit.evidence["step"] == 20  # traced back inside the compiled graph too


def test_strict_mode_stops_the_loop_at_a_nan() -> None:
    model = net()
    with pytest.raises(TrainingCheckError, match="loss.nonfinite"):
        loop(model, TrainingMonitor(model, every=1, strict=True), steps=30, nan_at=20)


# -- 2-rank DDP: one rank goes NaN, one rank raises ------------------------------------------------------
HERE = Path(__file__).parent
LIMIT = 240  # seconds; a hang ends the test as a failure


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def plain_ddp(out: Path, mode: str) -> tuple[list[int], str]:
    """Run tests/monitor/ddp_worker.py as ranks 0 and 1; (exit codes, both logs)."""
    port, env = free_port(), {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(HERE / "ddp_worker.py"), str(rank), "2", str(port), str(out), mode],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    logs = [p.communicate(timeout=LIMIT)[0] for p in procs]
    return [p.returncode for p in procs], "\n".join(logs)


def saved(out: Path) -> Report:
    return Report.from_json((out / "report" / "report.json").read_text())


@pytest.mark.distributed
def test_plain_ddp_rank_zero_names_the_rank_that_went_nonfinite(tmp_path: Path) -> None:
    codes, log = plain_ddp(tmp_path, "nan")
    assert codes == [0, 0], log
    report = saved(tmp_path)
    nan = report.get("loss.nonfinite")
    assert nan is not None
    assert (nan.evidence["rank"], nan.evidence["step"], nan.evidence["world_size"]) == (1, 6, 2)
    assert nan.evidence["ranks"] == "0,1"  # rank 0 caught it one step later, through the all-reduce
    assert nan.message.startswith("rank 1: the loss became nan at step 6")
    culprit = report.get("monitor.nonfinite_module")
    assert culprit is not None and culprit.evidence["rank"] == 1 and culprit.evidence["module"] == "0"
    assert report.meta["world_size"] == 2 and report.meta["ranks_reported"] == 2
    assert log.count("dldebug: 2 problem(s) found in 12 steps") == 1  # one summary, from rank 0


@pytest.mark.distributed
def test_plain_ddp_a_rank_that_raises_is_named_and_nothing_hangs(tmp_path: Path) -> None:
    codes, log = plain_ddp(tmp_path, "raise")
    assert codes[1] != 0 and "injected failure on rank 1" in log  # the user's exception is not swallowed
    assert codes[0] != 0  # rank 0 failed in DDP's all-reduce, waiting for rank 1
    failed = saved(tmp_path).get("monitor.run_failed")
    assert failed is not None and failed.evidence["rank"] == 1 and failed.evidence["ranks"] == "0,1"
    assert failed.message == "rank 1: the run stopped at step 6 with RuntimeError: injected failure on rank 1"
    assert log.count("problem(s) found in") == 1
