"""Demo scenario (lessons 2, 3, 6): six real digits runs watched by a TrainingMonitor.

A healthy run, a learning rate far too high, a learning rate of 0, frozen
weights, a poor (tiny-scaled) initialisation that plateaus and then breaks, and
an over-confident head (logits x 10 on 64 images). Each run is trained for real
on the CPU; the monitor's findings are shown with the loss curve they are about.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dldebug.demo.context import DemoContext
from dldebug.demo.digits import DigitsCNN, DigitsData, TrainHistory, train_digits
from dldebug.findings import Finding, Report, Table
from dldebug.monitor import TrainingMonitor

__all__ = ["RUNS", "SignalRun", "monitored_run", "run_signal", "scenario"]


def _plain() -> nn.Module:
    return DigitsCNN()


def _frozen() -> nn.Module:
    model = DigitsCNN()
    for name, param in model.named_parameters():
        param.requires_grad_(name == "classifier.3.bias")  # only the output bias may learn
    return model


def _tiny_init() -> nn.Module:
    model = DigitsCNN()
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(0.05)  # 4 layers x 0.05: signal and gradients start ~1e-5 of normal
    return model


def _overconfident() -> nn.Module:
    return DigitsCNN(logit_scale=10.0)


@dataclass(frozen=True)
class SignalRun:
    """One demo run: how the model is built and trained, and what the monitor should say."""

    name: str
    title: str
    build: Callable[[], nn.Module]
    expect: tuple[str, ...]  # any of these check ids (empty: no warning or error at all)
    train: dict[str, Any] = field(default_factory=dict)
    tiny_data: bool = False


RUNS: tuple[SignalRun, ...] = (
    SignalRun("healthy", "Healthy: Adam, lr 1e-3", _plain, (), {"epochs": 6}),
    SignalRun("lr_too_high", "Learning rate far too high: SGD, lr 5", _plain, ("loss.nonfinite", "loss.blowup"),
              {"epochs": 2, "lr": 5.0, "optimizer": "sgd"}),
    SignalRun("lr_zero", "Learning rate 0", _plain, ("loss.stuck",), {"epochs": 3, "lr": 0.0}),
    SignalRun("frozen", "Frozen weights (only the output bias trains)", _frozen, ("loss.stuck",), {"epochs": 3}),
    SignalRun("plateau", "Poor initialisation (all weights x 0.05): a plateau that breaks", _tiny_init,
              ("loss.plateau",), {"epochs": 6}),
    SignalRun("overconfident", "Over-confident head: logits x 10, 64 images", _overconfident,
              ("logits.overconfident",), {"epochs": 50, "batch_size": 16, "lr": 3e-3}, tiny_data=True),
)


def monitored_run(model: nn.Module, data: DigitsData, *, every: int = 5,
                  **train_kwargs: Any) -> tuple[TrainHistory, Report]:
    """Train the digits model with a TrainingMonitor on every step; return the history and the report."""
    monitor = TrainingMonitor(model, every=every)
    lr = float(train_kwargs.get("lr", 1e-3))

    def on_step(step: int, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        monitor.observe(loss, logits=logits, targets=targets, batch_size=len(targets), lr=lr)

    history = train_digits(model, data, on_step=on_step, **train_kwargs)
    monitor.close()
    return history, monitor.report()


def run_signal(run: SignalRun, data: DigitsData, *, seed: int = 0) -> tuple[TrainHistory, Report]:
    """Build and train one of :data:`RUNS` (seeded), returning its history and monitor report."""
    if run.tiny_data:
        data = dataclasses.replace(data, x_train=data.x_train[:64], y_train=data.y_train[:64])
    torch.manual_seed(seed)
    return monitored_run(run.build(), data, seed=seed, **run.train)


def _section(run: SignalRun, history: TrainHistory, report: Report) -> Report:
    figure = dataclasses.replace(report.figure("monitor.loss"), name=f"signals.{run.name}.loss", title=run.title)
    findings = [Finding(f.check, f.severity, f"{run.name}: {f.message}", f.evidence, f.fix, f.lesson)
                for f in report.findings]
    return Report(findings, title=run.title, figures=(figure,),
                  meta={"final_loss": history.losses[-1], "test_accuracy": history.test_accuracy[-1],
                        "steps_observed": report.meta.get("steps_observed", len(history.losses))})


def scenario(ctx: DemoContext) -> Report:
    """Train the six runs and show each one's curve with the monitor's findings."""
    sections, rows = [], []
    for done, run in enumerate(RUNS, start=1):
        history, report = run_signal(run, ctx.data, seed=ctx.seed)
        ctx.advance(done, len(RUNS))
        serious = sorted({f.check for f in report.findings if f.severity.rank >= 1})
        seen = sorted({f.check for f in report.findings})
        matched = any(report.has(c) for c in run.expect) if run.expect else not serious
        rows.append((run.name, len(history.losses), round(history.losses[-1], 4),
                     round(history.test_accuracy[-1], 4), ", ".join(seen) or "-",
                     " or ".join(run.expect) or "no warning", "yes" if matched else "NO"))
        sections.append(_section(run, history, report))
    table = Table("signals.summary",
                  ("run", "steps", "final loss", "test accuracy", "findings", "expected", "as expected"),
                  tuple(rows), caption="Digits CNN runs trained for real on the CPU, each watched by "
                                       "dldebug.TrainingMonitor(model, every=5).")
    return Report(title="Training signals: what the monitor sees (lessons 2, 3, 6)", tables=(table,),
                  sections=tuple(sections))
