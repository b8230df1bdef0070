"""can_overfit: the user's optimizer on a copy, an adaptive budget, and an error only for a stall.

Oracles: a plain training loop with the same optimizer reproduces the history step for step; the
planted failures (a softmax before CrossEntropyLoss, a width-1 bottleneck, frozen parameters)
are set-ups that cannot memorise the batch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dldebug import InputError, OverfitResult, can_overfit
from dldebug.demo.digits import DigitsCNN, DigitsData


@pytest.fixture
def batch(digits: DigitsData) -> tuple[torch.Tensor, torch.Tensor]:
    return digits.x_train[:32], digits.y_train[:32]


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def random_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(32, 20, generator=generator), torch.randint(0, 10, (32,), generator=generator)


def plain_loop(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
               make_optimizer: Callable[[Any], torch.optim.Optimizer], steps: int) -> list[float]:
    """The oracle: the textbook training loop on a copy."""
    model = copy.deepcopy(model).train()
    optimizer = make_optimizer(model.parameters())
    history = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(batch[0]), batch[1])
        history.append(float(loss.detach()))
        loss.backward()
        optimizer.step()
    return history


def test_healthy_cnn_overfits_and_stops_at_the_target(batch: tuple) -> None:
    torch.manual_seed(0)
    model = DigitsCNN()
    result = can_overfit(model, batch, nn.CrossEntropyLoss(), lr=3e-3)
    assert isinstance(result, OverfitResult) and result and result.passed and result.verdict == "passed"
    assert not result.findings
    with torch.no_grad():
        oracle = float(F.cross_entropy(model(batch[0]), batch[1]))
    assert result.initial_loss == pytest.approx(oracle, rel=1e-5)
    assert result.history[0] == pytest.approx(oracle, rel=1e-5)  # no dropout/batch-norm: train == eval loss
    assert len(result.history) == result.steps < result.cap == 1000  # stopped early
    assert result.history[-1] <= 0.05 * result.initial_loss < min(result.history[:-1])
    assert result.report.figure("overfit.loss").series[0].y == tuple(result.history)


@pytest.mark.parametrize(("name", "make"), [
    ("SGD (lr 0.05)", lambda p: torch.optim.SGD(p, lr=0.05)),
    ("SGD (lr 0.05, momentum 0.9)", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    ("Adam (lr 0.001)", lambda p: torch.optim.Adam(p, lr=1e-3)),
    ("AdamW (lr 0.001, weight_decay 0.01)", lambda p: torch.optim.AdamW(p, lr=1e-3)),
])
def test_the_users_optimizer_is_used_step_for_step(name: str, make: Callable) -> None:
    model, data = mlp(), random_batch()
    result = can_overfit(model, data, nn.CrossEntropyLoss(), optimizer=make(model.parameters()))
    assert result.optimizer == name and result.passed
    assert result.history == pytest.approx(plain_loop(model, data, make, result.steps), rel=1e-5)


def test_the_issues_false_alarm_is_gone() -> None:
    """Before: a fixed 100 Adam steps whatever the optimizer, 2.3 -> 0.133 called an error for all three."""
    steps = {}
    for name, make in (("sgd", lambda p: torch.optim.SGD(p, lr=0.05)),
                       ("momentum", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
                       ("adam", lambda p: torch.optim.Adam(p, lr=1e-3))):
        model = mlp()
        result = can_overfit(model, random_batch(), nn.CrossEntropyLoss(), optimizer=make(model.parameters()))
        assert result.passed and not result.findings
        steps[name] = result.steps
    assert steps["momentum"] < 100 < steps["adam"] < steps["sgd"] < 1000  # each optimizer at its own pace


def test_fallback_is_adam_and_lr_overrides_every_group() -> None:
    model, data = mlp(), random_batch()
    fallback = can_overfit(model, data, nn.CrossEntropyLoss(), steps=30)
    assert fallback.optimizer == "Adam (lr 0.001)" and fallback.lr == 1e-3
    assert fallback.history == pytest.approx(plain_loop(model, data, lambda p: torch.optim.Adam(p, 1e-3), 30),
                                             rel=1e-5)
    sgd = torch.optim.SGD(model.parameters(), lr=0.05)
    overridden = can_overfit(model, data, nn.CrossEntropyLoss(), optimizer=sgd, lr=0.01, steps=30)
    assert overridden.lr == 0.01 and sgd.param_groups[0]["lr"] == 0.05
    assert overridden.history == pytest.approx(plain_loop(model, data, lambda p: torch.optim.SGD(p, 0.01), 30),
                                               rel=1e-5)


def test_softmax_before_cross_entropy_stalls_and_is_an_error(batch: tuple) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(DigitsCNN(), nn.Softmax(dim=1))
    result = can_overfit(model, batch, nn.CrossEntropyLoss(), lr=3e-3)
    assert not result.passed and result.verdict == "stalled" and result.steps < 1000
    finding = result.report.get("capacity.cannot_overfit")
    assert finding is not None and finding.severity.value == "error" and finding.lesson == 3
    floor = math.log(math.e + 9) - 1  # CE of a one-hot softmax with 10 classes: the best it can do
    assert result.final_loss >= floor - 1e-4
    assert finding.evidence["final_loss"] == result.final_loss
    assert finding.evidence["recent_drop"] < 0.01
    assert "the loss stalled at" in finding.message


@pytest.mark.parametrize("make", [lambda p: torch.optim.SGD(p, lr=0.05), lambda p: torch.optim.Adam(p, lr=1e-3)])
def test_width_one_bottleneck_on_random_labels_is_an_error(make: Callable) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 1), nn.Linear(1, 10))
    result = can_overfit(model, random_batch(), nn.CrossEntropyLoss(), optimizer=make(model.parameters()))
    finding = result.report.get("capacity.cannot_overfit")
    assert finding is not None and result.verdict == "crawling" and result.steps == 1000
    assert finding.evidence["projected_steps"] > 2 * 1000
    assert "crawled from" in finding.message and "more steps" in finding.message


def test_still_falling_at_the_cap_is_info_with_the_numbers() -> None:
    model, data = mlp(), random_batch()
    result = can_overfit(model, data, nn.CrossEntropyLoss(), optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
                         steps=100)
    assert not result.passed and result.verdict == "unfinished"
    assert [f.check for f in result.findings] == ["capacity.overfit_unfinished"]
    finding = result.findings[0]
    assert finding.severity.value == "info"
    assert finding.evidence["final_train_loss"] == result.history[-1] < 0.9 * result.initial_loss
    assert finding.evidence["steps"] == finding.evidence["cap"] == 100
    assert f"{result.initial_loss:.4g} -> {result.history[-1]:.4g}" in finding.message


def test_frozen_parameters_are_an_error_not_a_crash() -> None:
    model = mlp().requires_grad_(False)
    result = can_overfit(model, random_batch(), nn.CrossEntropyLoss())
    assert result.verdict == "frozen" and result.steps == 0 and not result.passed
    assert "no parameter can be trained" in result.report.get("capacity.cannot_overfit").message
    trainable = mlp()  # an optimizer over none of the trainable parameters is frozen too
    result = can_overfit(trainable, random_batch(), nn.CrossEntropyLoss(),
                         optimizer=torch.optim.SGD(mlp(1).parameters(), lr=0.1))
    assert result.verdict == "frozen"


class KeywordModel(nn.Module):
    """Keyword inputs and a dict output with its own loss, as a Hugging Face model."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        scores = self.net(features)
        out = {"hidden": scores.detach(), "scores": scores}
        if labels is not None:
            out["loss"] = F.cross_entropy(scores, labels)
        return out


def test_dict_batches_loss_fn_none_and_output() -> None:
    x, y = random_batch()
    model = KeywordModel()
    own = can_overfit(model, {"features": x, "labels": y}, None)
    named = can_overfit(model, {"features": x, "labels": y}, nn.CrossEntropyLoss(), output="scores")
    assert own.passed and named.passed
    assert own.history == pytest.approx(named.history, rel=1e-6)
    assert own.history == pytest.approx(plain_loop(model.net, (x, y), lambda p: torch.optim.Adam(p, 1e-3),
                                                   own.steps), rel=1e-5)
    with pytest.raises(InputError, match="output='missing' is not in the model's output"):
        can_overfit(model, {"features": x, "labels": y}, nn.CrossEntropyLoss(), output="missing")


def test_user_model_gradients_and_rng_untouched(batch: tuple) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(DigitsCNN(), nn.Dropout(0.3)).eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    before = copy.deepcopy(model.state_dict())
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    can_overfit(model, batch, nn.CrossEntropyLoss(), optimizer=optimizer, steps=5)
    assert torch.equal(torch.get_rng_state(), rng)
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert optimizer.state_dict()["state"] == {}


def test_runs_are_reproducible(batch: tuple) -> None:
    model = nn.Sequential(DigitsCNN(), nn.Dropout(0.3))
    first = can_overfit(model, batch, nn.CrossEntropyLoss(), steps=5)
    assert can_overfit(model, batch, nn.CrossEntropyLoss(), steps=5).history == first.history


def test_initial_loss_far_above_ln_c_is_flagged(batch: tuple) -> None:
    torch.manual_seed(0)
    hot = can_overfit(DigitsCNN(logit_scale=30.0), batch, nn.CrossEntropyLoss(), steps=3)
    finding = hot.report.get("capacity.init_loss")
    assert finding is not None and finding.evidence["expected_loss"] == pytest.approx(math.log(10))
    assert finding.evidence["initial_loss"] == hot.initial_loss > 1.5 * math.log(10)
    torch.manual_seed(0)
    assert not can_overfit(DigitsCNN(), batch, F.cross_entropy, steps=3).report.has("capacity.init_loss")


def test_initial_loss_of_a_model_computing_its_own_cross_entropy() -> None:
    x, y = random_batch()
    model = KeywordModel()
    with torch.no_grad():
        model.net[-1].weight.mul_(200.0)  # confidently wrong at initialisation
    finding = can_overfit(model, {"features": x, "labels": y}, None, steps=2).report.get("capacity.init_loss")
    assert finding is not None and finding.evidence["num_classes"] == 10  # read through the CE oracle


def test_non_finite_loss_stops_and_fails(batch: tuple) -> None:
    def nan_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target) * float("nan")

    result = can_overfit(DigitsCNN(), batch, nan_loss, steps=50)
    assert not result.passed and result.steps == 1 and result.verdict == "diverged"
    assert "non-finite at step 0" in result.report.get("capacity.cannot_overfit").message


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    (((torch.zeros(2, 1, 8, 8),), nn.CrossEntropyLoss()), {},
     "can_overfit: the batch holds only tuple of 1 (Tensor(2, 1, 8, 8)); give (inputs, targets)."),
    (((torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long)), nn.CrossEntropyLoss(reduction="none")), {},
     "can_overfit: the loss must be a scalar tensor; got shape (2,). Use reduction='mean'."),
    (((torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long)), None), {},
     "can_overfit: loss_fn=None means the model computes its own loss, but its output is Tensor of shape (2, 10) "
     "(float32) with no 'loss'."),
    (((torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long)), nn.CrossEntropyLoss()), {"steps": 0},
     "steps must be a positive integer (the step budget); got 0."),
    (((torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long)), nn.CrossEntropyLoss()), {"optimizer": "sgd"},
     "optimizer must be a torch.optim.Optimizer (the one you train with) or None; got str."),
])
def test_bad_inputs(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError) as info:
        can_overfit(DigitsCNN(), *args, **kwargs)
    assert str(info.value).startswith(message)
