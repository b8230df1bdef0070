"""scale_lr and warmup: rules, rationale, composition with torch schedulers, checkpointing."""

from __future__ import annotations

import math

import pytest
import torch

from dldebug.errors import ConfigError, InputError
from dldebug.lr import scale_lr
from dldebug.lr.warmup import warmup, warmup_schedule


@pytest.mark.parametrize(
    ("base_lr", "b0", "b", "rule", "optimizer", "expected", "chosen"),
    [
        (0.1, 256, 8192, "linear", None, 3.2, "linear"),  # Goyal et al.'s ResNet-50 at 8k
        (0.1, 256, 256, "linear", None, 0.1, "linear"),
        (1e-3, 64, 256, "sqrt", None, 2e-3, "sqrt"),
        (0.1, 256, 1024, "auto", "sgd", 0.4, "linear"),
        (1e-3, 64, 1024, "auto", "adam", 4e-3, "sqrt"),
        (1e-3, 64, 1024, "auto", "AdamW", 4e-3, "sqrt"),
        (0.1, 256, 128, "linear", None, 0.05, "linear"),  # smaller batch scales down
    ],
)
def test_rules(base_lr, b0, b, rule, optimizer, expected, chosen):
    result = scale_lr(base_lr, b0, b, rule=rule, optimizer=optimizer)
    assert math.isclose(result.lr, expected, rel_tol=1e-12)
    assert result.rule == chosen
    assert f"batch {b0} -> {b}" in result.rationale


def test_auto_reads_optimizer_instances_and_says_which():
    p = torch.nn.Parameter(torch.zeros(1))
    sgd = scale_lr(0.1, 256, 512, optimizer=torch.optim.SGD([p], lr=0.1))
    adam = scale_lr(0.1, 256, 1024, optimizer=torch.optim.Adam([p]))
    assert sgd.rule == "linear" and "auto picked linear for an SGD-family optimiser" in sgd.rationale
    assert adam.rule == "sqrt" and "Malladi et al. 2022" in adam.rationale and math.isclose(adam.lr, 0.2)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((0.1, 256, 512), {"rule": "cubic"}, ConfigError,
         "Unknown rule 'cubic'; expected one of ['linear', 'sqrt', 'auto']."),
        ((-1.0, 256, 512), {}, InputError, "base_lr must be a positive finite number; got -1.0."),
        ((0.1, 0, 512), {}, InputError, "base_batch_size must be a positive integer; got 0."),
        ((0.1, 256, 3.5), {}, InputError, "batch_size must be a positive integer; got 3.5."),
    ],
)
def test_bad_arguments(args, kwargs, error, message):
    with pytest.raises(error) as info:
        scale_lr(*args, **kwargs)
    assert str(info.value) == message


def _opt(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def test_warmup_is_linear_then_hands_over_to_after():
    opt = _opt(0.4)
    sched = warmup(opt, 4, start_factor=0.25, after=lambda o: torch.optim.lr_scheduler.StepLR(o, 2, gamma=0.5))
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [0.1, 0.175, 0.25, 0.325, 0.4, 0.4, 0.2, 0.2, 0.1, 0.1]
    assert lrs == pytest.approx(expected)


def test_warmup_state_dict_resumes_identically():
    opt_a = _opt()
    a = warmup(opt_a, 5, start_factor=0.1, after=lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9))
    for _ in range(3):
        opt_a.step()
        a.step()
    opt_b = _opt()
    b = warmup(opt_b, 5, start_factor=0.1, after=lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9))
    b.load_state_dict(a.state_dict())
    opt_b.load_state_dict(opt_a.state_dict())
    for _ in range(6):
        assert opt_b.param_groups[0]["lr"] == pytest.approx(opt_a.param_groups[0]["lr"])
        for o, s in ((opt_a, a), (opt_b, b)):
            o.step()
            s.step()


def test_warmup_schedule_matches_formula():
    values = warmup_schedule(3.2, 5, start_factor=1 / 32, total_steps=8)
    formula = [3.2 * (1 / 32 + (1 - 1 / 32) * min(i, 5) / 5) for i in range(8)]
    assert values == pytest.approx(formula)


@pytest.mark.parametrize(
    ("steps", "factor", "message"),
    [(0, 0.1, "warmup_steps must be a positive integer; got 0."),
     (5, 0.0, "start_factor must be in (0, 1]; got 0.0.")],
)
def test_warmup_bad_arguments(steps, factor, message):
    with pytest.raises(InputError) as info:
        warmup(_opt(), steps, start_factor=factor)
    assert str(info.value).startswith(message)


def test_warmup_refuses_foreign_after():
    other = torch.optim.lr_scheduler.StepLR(_opt(), 1)
    with pytest.raises(InputError, match="different optimizer"):
        warmup(_opt(), 3, after=other)
