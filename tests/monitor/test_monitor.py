"""TrainingMonitor in a plain loop: non-finite values, strictness, internal errors, curve findings."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from dldebug import ConfigError, InputError, TrainingCheckError, TrainingMonitor
from dldebug.monitor.history import DecimatedHistory


def noisy_decay(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 2.3 * np.exp(-np.arange(n) / (n / 5)) + 0.1 + 0.05 * rng.standard_normal(n)


def test_healthy_loop_is_silent(kit: SimpleNamespace) -> None:
    model = kit.small_net()
    monitor = TrainingMonitor(model, every=5)
    losses = kit.train_steps(model, monitor, 150)
    report = monitor.report()
    assert losses[-1] < losses[0]
    assert report.filter(min_severity="warning") == ()
    assert report.figure("monitor.loss").series[0].y[:3] == tuple(losses[:3])
    assert report.table("monitor.layers").column("module") == ["0", "3"]  # ReLU, Identity: not hooked


def test_healthy_noisy_curve_without_model_is_silent() -> None:
    monitor = TrainingMonitor(every=10)
    for value in noisy_decay(3000):
        monitor.observe(float(value))
    assert monitor.report().filter(min_severity="warning") == ()


def test_nonfinite_loss_is_caught_at_once_and_reported_once() -> None:
    monitor = TrainingMonitor(every=50)
    for step in range(30):
        monitor.observe(1.0 / (step + 1) if step != 17 else math.inf)
        if step == 17:
            assert monitor.nonfinite is not None  # at once, before any report
            assert (monitor.nonfinite["step"], monitor.nonfinite["value"]) == (17, math.inf)
    report = monitor.report()
    found = report.filter(check="loss.nonfinite")
    assert len(found) == 1
    assert found[0].evidence["step"] == 17
    assert found[0].evidence["last_finite_step"] == 16
    assert not report


@pytest.mark.parametrize("poison_at", [0, 12])
def test_first_nonfinite_module_output(poison_at: int, kit: SimpleNamespace) -> None:
    poison = kit.Poison()
    model = kit.small_net(poison)
    monitor = TrainingMonitor(model, every=50)

    def arm(step: int) -> None:
        poison.armed = step >= poison_at

    kit.train_steps(model, monitor, 20, on_step=arm)
    finding = monitor.report().get("monitor.nonfinite_module")
    assert finding is not None
    assert finding.evidence["step"] == poison_at
    assert (finding.evidence["module"], finding.evidence["where"]) == ("2", "output")
    assert finding.evidence["module_type"] == "Poison"


def test_nonfinite_in_the_loss_function_names_no_module(kit: SimpleNamespace) -> None:
    model = kit.small_net()
    monitor = TrainingMonitor(model)
    logits = model(torch.randn(4, 6))
    loss = torch.log(logits.sum() * 0 - 1)  # log(-1): NaN made by the loss, not by a module
    loss.backward()
    monitor.observe(loss)
    finding = monitor.report().get("monitor.nonfinite_module")
    assert finding is not None and finding.evidence["where"] == "loss"
    assert finding.evidence["module"] == "<loss function>"


def test_nonfinite_gradient_with_finite_loss_needs_layer_stats(kit: SimpleNamespace) -> None:
    def run(layer_stats: bool) -> TrainingMonitor:
        model = nn.Sequential(nn.Linear(4, 4), kit.SqrtAbs(), nn.Linear(4, 1))
        with torch.no_grad():
            model[0].weight.zero_()  # every hidden pre-activation is 0 (bias aside)
            model[0].bias.zero_()
        monitor = TrainingMonitor(model, every=1000, layer_stats=layer_stats)
        for _ in range(3):
            x = torch.randn(8, 4)
            out = model(x)
            loss = out.pow(2).mean()
            loss.backward()
            monitor.observe(loss)  # before the update: only gradients are non-finite
            model.zero_grad()
        return monitor

    with_stats = run(True).report().get("monitor.nonfinite_module")
    assert with_stats is not None
    assert (with_stats.evidence["where"], with_stats.evidence["module"], with_stats.evidence["step"]) == (
        "gradient", "0", 0)
    assert run(True).report().get("loss.nonfinite") is None
    # By default only every `every`-th step is measured: step 0 is, so the fault is still seen...
    assert run(False).report().get("monitor.nonfinite_module") is not None


def test_strict_mode_raises_and_default_mode_never_does() -> None:
    strict = TrainingMonitor(strict=True)
    strict.observe(1.0)
    with pytest.raises(TrainingCheckError, match=r"loss.nonfinite: the loss became nan at step 1"):
        strict.observe(float("nan"))
    relaxed = TrainingMonitor()
    relaxed.observe(float("nan"))  # no exception


def test_internal_failure_becomes_a_finding() -> None:
    monitor = TrainingMonitor(every=1)
    monitor.observe("not a number")  # type: ignore[arg-type]
    monitor.observe(torch.ones(3), logits=torch.ones(4, 1))  # 1-class logits: topk(2) fails
    monitor.observe(1.0)
    finding = monitor.report().get("monitor.internal_error")
    assert finding is not None
    assert finding.evidence["count"] == 2
    assert finding.evidence["first_error"] == (
        "InputError: TrainingMonitor.observe: loss must be a number, a tensor or the model's output holding "
        "'loss' (a ModelOutput, dict or tuple); got str.")
    assert monitor.losses.steps == [1, 2]  # the bad logits of step 1 did not cost its loss value
    with pytest.raises(ValueError):
        TrainingMonitor(strict=True).observe("not a number")  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"every": 0}, "every must be a positive number of steps; got 0."),
    ({"capacity": 10}, "capacity must be an even number of points >= 64; got 10."),
    ({"base_batch_size": -1}, "base_batch_size must be a positive int or None; got -1."),
])
def test_invalid_configuration(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        TrainingMonitor(**kwargs)
    assert str(info.value) == message


def test_model_must_be_a_module() -> None:
    with pytest.raises(InputError, match="model must be a torch.nn.Module or None; got str"):
        TrainingMonitor("resnet")  # type: ignore[arg-type]


def test_deferred_sync_matches_immediate_reads() -> None:
    values = [*noisy_decay(95).tolist(), math.nan, 1.0, 1.0, 1.0, 1.0]
    immediate, deferred = TrainingMonitor(every=7), TrainingMonitor(every=7, defer_sync=True)
    for v in values:
        immediate.observe(torch.tensor(v))
        deferred.observe(torch.tensor(v))
    assert len(deferred._pending) == 100 % 7  # read in blocks of `every`
    a, b = immediate.report(), deferred.report()
    fa, fb = a.figure("monitor.loss").series[0], b.figure("monitor.loss").series[0]
    assert fa.x == fb.x
    np.testing.assert_array_equal(fa.y, fb.y)  # NaN included
    assert b.get("loss.nonfinite").evidence["step"] == 95  # type: ignore[union-attr]


def test_eval_passes_are_not_recorded(kit: SimpleNamespace) -> None:
    model = kit.small_net()
    monitor = TrainingMonitor(model)
    with torch.no_grad():
        model(torch.randn(2, 6))
    assert list(monitor.probe.executed()) == []  # type: ignore[union-attr]
    monitor.close()
    model(torch.randn(2, 6))
    assert list(monitor.probe.executed()) == []  # type: ignore[union-attr]


def test_decimated_history_keeps_an_even_sample() -> None:
    history = DecimatedHistory(("v",), capacity=8)
    for step in range(100):
        history.append(step, (float(step),))
    assert len(history) <= 8
    steps = history.steps
    assert steps[0] == 0 and len(set(np.diff(steps))) == 1
    assert history.column("v") == [float(s) for s in steps]


def test_strict_mode_raises_when_the_curve_judgement_finds_an_error() -> None:
    monitor = TrainingMonitor(every=1, strict=True)
    flat = 2.3 + 0.01 * np.random.default_rng(0).standard_normal(200)
    with pytest.raises(TrainingCheckError, match=r"^loss.stuck: "):
        for value in flat:
            monitor.observe(float(value))
    assert monitor.steps_observed == 51  # judged after 50 * every steps, not at the end


def test_curve_findings_come_from_diagnose_curve() -> None:
    from dldebug.curves import diagnose_curve

    values = noisy_decay(400)
    values[250:] += np.linspace(0, 30, 150)  # a sustained rise
    monitor = TrainingMonitor(every=10)
    for value in values:
        monitor.observe(float(value))
    expected = diagnose_curve(values).findings
    assert [f.check for f in monitor.report().findings] == [f.check for f in expected]
    assert monitor.report().has("loss.diverging")
