"""Wrong-type and out-of-range arguments of the learning-rate tools: one clear error each, never a hang.

The sweep of scale_lr, warmup, warmup_schedule, lr_plan and lr_range_test for the bug class of
docs/reliability.md, crashes C4-C7 (bools as numbers, NaN/inf, strings, 0-d tensors, objects that are not an
optimizer or a model) and for sizes that hung (a warm-up of 2**40 steps laid out step by step).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from dldebug.cli.app import main
from dldebug.errors import ConfigError, DldebugError, InputError
from dldebug.lr import lr_plan, lr_range_test, scale_lr, warmup, warmup_schedule
from dldebug.lr.plan import MAX_WARMUP_STEPS
from dldebug.lr.warmup import MAX_SCHEDULE_STEPS


def _opt(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=lr)


@pytest.mark.parametrize(("args", "kwargs", "error", "message"), [
    ((True, 256, 512), {}, InputError, "base_lr must be a positive finite number; got True (a bool)."),
    ((None, 256, 512), {}, InputError, "base_lr must be a positive finite number; got None."),
    ((float("nan"), 256, 512), {}, InputError, "base_lr must be a positive finite number; got nan."),
    (("0.1", 256, 512), {}, InputError, "base_lr must be a positive finite number; got '0.1' (a str)."),
    ((torch.tensor(0.1), 256, 512), {}, InputError,
     "base_lr must be a positive finite number; got a Tensor of shape () (a number is expected: use .item())."),
    ((0.1, True, 512), {}, InputError, "base_batch_size must be a positive integer; got True (a bool)."),
    ((0.1, 256, None), {}, InputError, "batch_size must be a positive integer; got None."),
    ((0.1, 256, 512), {"rule": None}, ConfigError, "Unknown rule None; expected one of ['linear', 'sqrt', 'auto']."),
    ((0.1, 256, 512), {"rule": ["linear"]}, ConfigError, "Unknown rule ['linear']"),
    ((0.1, 256, 512), {"optimizer": 3}, InputError,
     "optimizer must be a torch optimizer, its name ('sgd', 'adam') or None; got 3."),
])
def test_scale_lr_bad_arguments(args: tuple, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error) as info:
        scale_lr(*args, **kwargs)
    assert str(info.value).startswith(message)


def test_scale_lr_takes_numpy_numbers_and_names_an_unknown_optimiser() -> None:
    scaled = scale_lr(np.float32(0.1), np.int64(256), np.int64(512))
    assert scaled.lr == pytest.approx(0.2) and isinstance(scaled.lr, float)
    assert "optimiser 'lion' of unknown family (linear assumed" in scale_lr(0.1, 256, 512, optimizer="lion").rationale


@pytest.mark.parametrize(("optimizer", "steps", "factor", "message"), [
    (None, 5, 0.1, "optimizer must be a torch optimizer (torch.optim.SGD, AdamW ...); got None."),
    ("sgd", 5, 0.1, "optimizer must be a torch optimizer (torch.optim.SGD, AdamW ...); got 'sgd' (a str)."),
    (_opt, True, 0.1, "warmup_steps must be a positive integer; got True (a bool)."),
    (_opt, 5.0, 0.1, "warmup_steps must be a positive integer; got 5.0."),
    (_opt, 5, None, "start_factor must be in (0, 1]; got None. It is the first step's fraction of the target "
                    "learning rate."),
    (_opt, 5, "x", "start_factor must be in (0, 1]; got 'x' (a str)."),
    (_opt, 5, float("nan"), "start_factor must be in (0, 1]; got nan."),
    (_opt, 5, True, "start_factor must be in (0, 1]; got True (a bool)."),
    (_opt, 5, [0.1], "start_factor must be in (0, 1]; got [0.1] (a list)."),
])
def test_warmup_bad_arguments(optimizer: object, steps: object, factor: object, message: str) -> None:
    target = optimizer() if callable(optimizer) else optimizer
    with pytest.raises(InputError) as info:
        warmup(target, steps, start_factor=factor)  # type: ignore[arg-type]
    assert str(info.value).startswith(message)


def test_warmup_takes_a_numpy_step_count() -> None:
    optimizer = _opt()
    scheduler = warmup(optimizer, np.int64(2), start_factor=np.float64(0.5))  # type: ignore[arg-type]
    seen = []
    for _ in range(3):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.5, 0.75, 1.0])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"warmup_steps": 2**40}, f"warmup_schedule computes one value per step, at most {MAX_SCHEDULE_STEPS:,}; "
                              f"asked for {2**40 + 1:,} (warmup_steps={2**40:,})."),
    ({"warmup_steps": 5, "total_steps": 0}, "total_steps must be a positive integer; got 0."),
    ({"warmup_steps": 5, "base_lr": -1.0}, "base_lr must be a positive finite number; got -1.0."),
])
def test_warmup_schedule_refuses_at_once(kwargs: dict, message: str) -> None:
    arguments = {"base_lr": 0.1, **kwargs}
    with pytest.raises(InputError) as info:
        warmup_schedule(**arguments)
    assert str(info.value).startswith(message)


_EPOCHS = "warmup_epochs must be a finite number >= 0 (0: no warm-up); got "
_PER_EPOCH = ("a warm-up needs steps_per_epoch (optimiser steps per epoch at the new batch size), a positive "
              "integer; got ")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"warmup_epochs": float("nan"), "steps_per_epoch": 10}, _EPOCHS + "nan."),
    ({"warmup_epochs": float("inf"), "steps_per_epoch": 10}, _EPOCHS + "inf."),
    ({"warmup_epochs": -1, "steps_per_epoch": 10}, _EPOCHS + "-1."),  # was silently one step
    ({"warmup_epochs": "5", "steps_per_epoch": 10}, _EPOCHS + "'5' (a str)."),
    ({"warmup_epochs": True, "steps_per_epoch": 10}, _EPOCHS + "True (a bool)."),
    ({"warmup_epochs": torch.tensor([1, 2]), "steps_per_epoch": 10}, _EPOCHS + "a Tensor of shape (2,)."),
    ({"warmup_epochs": 1, "steps_per_epoch": 0.5}, _PER_EPOCH + "0.5."),
    ({"warmup_epochs": 1, "steps_per_epoch": True}, _PER_EPOCH + "True (a bool)."),
    ({"warmup_epochs": 1, "steps_per_epoch": "10"}, _PER_EPOCH + "'10' (a str)."),
    ({"warmup_epochs": 1, "steps_per_epoch": 10, "start_factor": 2.0}, "start_factor must be in (0, 1]; got 2.0."),
    ({"warmup_epochs": 1, "steps_per_epoch": 2**40},
     f"a warm-up of {2**40:,} steps (warmup_epochs=1 x steps_per_epoch={2**40:,}) is more than the "
     f"{MAX_WARMUP_STEPS:,} steps lr_plan lays out."),
    ({"warmup_epochs": 2**40, "steps_per_epoch": 10}, "steps lr_plan lays out. Check the units"),
])
def test_lr_plan_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError) as info:
        lr_plan(0.1, 256, 8192, **kwargs)
    assert message in str(info.value)


def test_lr_plan_at_imagenet_scale_and_a_long_epoch() -> None:
    # Goyal et al.: 5 epochs of warm-up at 5,005 steps per epoch (batch 256 on ImageNet).
    report = lr_plan(0.1, 256, 8192, warmup_epochs=5, steps_per_epoch=5005, optimizer="sgd")
    rows = report.table("lr.warmup_schedule").records()
    assert [r["step"] for r in rows] == [0, 5005, 10010, 15015, 20020, 25025]
    assert rows[0]["lr"] == pytest.approx(0.1) and rows[-1]["lr"] == pytest.approx(3.2)
    # An epoch of 2,000,000 steps and a 2,000-step warm-up: the plot shows the ramp and as long after it.
    long = lr_plan(1e-3, 64, 256, warmup_epochs=0.001, steps_per_epoch=2_000_000, optimizer="adam")
    assert len(long.figures[0].series[0].x) == 4000
    # A 50-epoch warm-up lists 20 epochs in its table, evenly spaced, plus the start.
    wide = lr_plan(0.1, 256, 512, warmup_epochs=50, steps_per_epoch=3)
    epochs = [r["epoch"] for r in wide.table("lr.warmup_schedule").records()]
    assert len(epochs) == 21 and epochs[0] == 0 and epochs[-1] == 50


def test_cli_nan_warmup_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["lr", "--base-lr", "0.1", "--base-batch", "256", "--batch", "512", "--warmup-epochs", "nan",
                 "--steps-per-epoch", "10"])
    assert code == 2
    assert _EPOCHS + "nan." in capsys.readouterr().err.replace("\n", " ").replace("  ", " ")


def _setup() -> tuple[nn.Module, list, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    return model, [(torch.randn(8, 4), torch.randint(0, 2, (8,)))], torch.optim.SGD(model.parameters(), lr=0.1)


_RANGE = "Expected 0 < start < end; got "


@pytest.mark.parametrize(("change", "message"), [
    ({"model": 3}, "lr_range_test: model must be a torch nn.Module; got 3."),
    ({"optimizer": "sgd"}, "lr_range_test: optimizer must be a torch optimizer over the model's parameters"),
    ({"loss_fn": "cross_entropy"}, "lr_range_test: loss_fn must be a function (output, targets) -> scalar loss, "
                                   "or None for the model's own loss; got 'cross_entropy' (a str)."),
    ({"loader": np.zeros((4, 4))}, "lr_range_test: loader must be an iterable of batches"),
    ({"loader": np.array(0.5)}, "lr_range_test: loader must be an iterable of batches"),
    ({"start": None}, _RANGE + "start=None, end=10."),
    ({"start": "1e-7"}, _RANGE + "start='1e-7' (a str), end=10."),
    ({"start": True}, _RANGE + "start=True (a bool), end=10."),
    ({"end": float("inf")}, _RANGE + "start=1e-07, end=inf."),
    ({"end": float("nan")}, _RANGE + "start=1e-07, end=nan."),
    ({"end": torch.tensor([1.0, 2.0])}, _RANGE + "start=1e-07, end=a Tensor of shape (2,)."),
    ({"steps": True}, "steps must be an integer >= 10; got True (a bool)."),
    ({"steps": 100.0}, "steps must be an integer >= 10; got 100.0."),
    ({"steps": 2**40}, f"steps={2**40:,} is more than a range test needs (at most 100,000"),
])
def test_lr_range_test_bad_arguments(change: dict, message: str) -> None:
    model, loader, optimizer = _setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    arguments = {"model": model, "loader": loader, "loss_fn": nn.functional.cross_entropy, "optimizer": optimizer,
                 **change}
    with pytest.raises(DldebugError) as info:
        lr_range_test(arguments.pop("model"), arguments.pop("loader"), arguments.pop("loss_fn"),
                      arguments.pop("optimizer"), **arguments)
    assert isinstance(info.value, InputError)
    assert str(info.value).startswith(message), str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_lr_range_test_takes_numpy_numbers() -> None:
    model, loader, optimizer = _setup()
    result = lr_range_test(model, loader, nn.functional.cross_entropy, optimizer, start=np.float32(1e-5),
                           end=np.float64(1.0), steps=np.int64(12))
    assert len(result.lrs) == 12 and result.lrs[0] == pytest.approx(1e-5)
    assert re.match(r"lr\.range_(suggestion|no_descent)", result.report.findings[0].check)
