"""Helpers for the monitor tests: tiny models with a NaN switch, and a single-threaded torch."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest (and least disturbed by a busy machine) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Poison(nn.Module):
    """Identity, except that it writes NaN into its output while ``armed``."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float("nan") if self.armed else x


class SqrtAbs(nn.Module):
    """sqrt(|x|): finite forward, but an infinite derivative where x == 0 (NaN gradients)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs().sqrt()


def small_net(middle: nn.Module | None = None) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), middle or nn.Identity(), nn.Linear(16, 3))


def train_steps(model: nn.Module, monitor: object, steps: int, *, on_step: object = None, lr: float = 0.05,
                batch_size: int = 32) -> list[float]:
    """Plain loop: SGD on random 3-class data; ``on_step(step)`` runs before each forward."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(512, 6, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        if on_step is not None:
            on_step(step)  # type: ignore[operator]
        idx = torch.randint(0, 512, (batch_size,), generator=gen)
        logits = model(x[idx])
        loss = nn.functional.cross_entropy(logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        monitor.observe(loss, logits=logits, targets=y[idx], batch_size=batch_size, lr=lr)  # type: ignore[attr-defined]
        losses.append(float(loss.detach()))
    return losses


@pytest.fixture
def kit() -> SimpleNamespace:
    """The helpers above as one namespace (test modules cannot import conftest)."""
    return SimpleNamespace(Poison=Poison, SqrtAbs=SqrtAbs, small_net=small_net, train_steps=train_steps)


@pytest.fixture(scope="session")
def real_runs() -> object:
    """tests/monitor/real_runs.py (tiny real Lightning / HF Trainer runs), loaded by path."""
    import importlib.util
    import sys
    from pathlib import Path

    if "dldebug_real_runs" not in sys.modules:
        spec = importlib.util.spec_from_file_location("dldebug_real_runs", Path(__file__).with_name("real_runs.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["dldebug_real_runs"] = module
        spec.loader.exec_module(module)
    return sys.modules["dldebug_real_runs"]
