"""lr_range_test: robust suggestion (noise, spikes, NaN), exact restore, and real digits acceptance."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from dldebug.demo.digits import DigitsCNN, train_digits
from dldebug.errors import InputError
from dldebug.lr.range_test import _judge, lr_range_test

LRS = np.logspace(-6, 1, 120)


def synthetic_curve(seed=0, noise=0.05):
    """Flat at 2.3 for tiny rates, falls between 1e-4 and 3e-2, then blows up: a textbook range test."""
    log_lr = np.log10(LRS)
    fall = 2.0 / (1 + np.exp(-(log_lr + 2.8) * 3))  # descent centred at lr ~ 1.6e-3
    rise = np.exp(np.clip((log_lr + 1.0) * 3, None, 30)) * 0.05  # divergence past ~1e-1
    rng = np.random.default_rng(seed)
    return 2.3 - fall + rise + noise * rng.standard_normal(len(LRS))


def test_suggestion_lies_in_the_descending_region():
    result = _judge(LRS, synthetic_curve(), None)
    assert result.report.has("lr.range_suggestion")
    assert 1e-4 < result.suggestion < 3e-2
    assert result.low <= result.suggestion <= result.high


def test_a_single_early_spike_does_not_move_the_suggestion():
    clean = _judge(LRS, synthetic_curve(), None).suggestion
    spiky = synthetic_curve()
    spiky[[10, 11, 60]] = [50.0, 0.0, 80.0]  # spike then a dip: fools steepest-gradient finders
    result = _judge(LRS, spiky, None)
    assert result.suggestion == pytest.approx(clean, rel=0.35)


def test_nan_stops_the_curve_and_the_prefix_is_used():
    curve = synthetic_curve()
    curve[90:] = np.nan
    result = _judge(LRS[:91], curve[:91], float(LRS[90]))
    assert result.stopped_at == pytest.approx(LRS[90])
    assert 1e-4 < result.suggestion < 3e-2


@pytest.mark.parametrize("seed", range(5))
def test_suggestion_is_stable_under_noise(seed):
    result = _judge(LRS, synthetic_curve(seed=seed, noise=0.15), None)
    assert 1e-4 < result.suggestion < 3e-2


def test_flat_curve_gives_no_suggestion_and_a_warning():
    flat = 2.3 + 0.05 * np.random.default_rng(1).standard_normal(len(LRS))
    result = _judge(LRS, flat, None)
    assert result.suggestion is None and result.report.has("lr.range_no_descent")
    assert not result.report.has("lr.range_suggestion")


def _loader(data, batch_size=64, seed=0):
    generator = torch.Generator().manual_seed(seed)

    class Loader:
        def __iter__(self):
            order = torch.randperm(len(data.y_train), generator=generator)
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                yield data.x_train[idx], data.y_train[idx]

    return Loader()


def test_model_optimizer_and_rng_are_restored_exactly(digits):
    torch.manual_seed(0)
    model = DigitsCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    # one real step first, so the optimizer has momentum buffers and parameters have grads
    loss = torch.nn.functional.cross_entropy(model(digits.x_train[:32]), digits.y_train[:32])
    loss.backward()
    optimizer.step()
    model.eval()
    before_model = copy.deepcopy(model.state_dict())
    before_opt = copy.deepcopy(optimizer.state_dict())
    before_grads = [p.grad.clone() for p in model.parameters()]
    before_rng = torch.get_rng_state()
    lr_range_test(model, _loader(digits), torch.nn.CrossEntropyLoss(), optimizer, start=1e-5, end=10, steps=30)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before_model[key]), key
    after_opt = optimizer.state_dict()
    assert after_opt["param_groups"] == before_opt["param_groups"]
    for key, state in after_opt["state"].items():
        assert torch.equal(state["momentum_buffer"], before_opt["state"][key]["momentum_buffer"])
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), before_grads, strict=True))
    assert not model.training
    assert torch.equal(torch.get_rng_state(), before_rng)


def test_bad_arguments():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(InputError, match=r"Expected 0 < start < end; got start=1.0, end=0.1."):
        lr_range_test(model, [], torch.nn.MSELoss(), opt, start=1.0, end=0.1)
    with pytest.raises(InputError, match="the loader produced no batch"):
        lr_range_test(model, [], torch.nn.MSELoss(), opt)


@pytest.mark.slow
def test_suggestion_trains_digits_within_two_points_of_the_best_grid_lr(digits):
    torch.manual_seed(0)
    model = DigitsCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    result = lr_range_test(model, _loader(digits), torch.nn.CrossEntropyLoss(), optimizer,
                           start=1e-5, end=10, steps=100)
    assert result.suggestion is not None

    def accuracy(lr):
        torch.manual_seed(0)
        return train_digits(DigitsCNN(), digits, epochs=3, lr=lr, optimizer="sgd").test_accuracy[-1]

    grid = {lr: accuracy(lr) for lr in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)}
    suggested = accuracy(result.suggestion)
    assert suggested >= max(grid.values()) - 0.02, (result.suggestion, suggested, grid)
