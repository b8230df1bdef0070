"""can_overfit: a healthy CNN over-fits a batch of digits; a softmax before CrossEntropyLoss cannot."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dldebug import InputError, OverfitResult, can_overfit
from dldebug.demo.digits import DigitsCNN, DigitsData


@pytest.fixture
def batch(digits: DigitsData) -> tuple[torch.Tensor, torch.Tensor]:
    return digits.x_train[:32], digits.y_train[:32]


def test_healthy_cnn_overfits_and_history_starts_at_the_true_loss(batch: tuple) -> None:
    torch.manual_seed(0)
    model = DigitsCNN()
    result = can_overfit(model, batch, nn.CrossEntropyLoss(), steps=120, lr=3e-3)
    assert isinstance(result, OverfitResult) and result and result.passed
    assert not result.findings
    with torch.no_grad():
        oracle = float(F.cross_entropy(model(batch[0]), batch[1]))
    assert result.initial_loss == pytest.approx(oracle, rel=1e-5)
    assert result.history[0] == pytest.approx(oracle, rel=1e-5)  # no dropout/batch-norm: train == eval loss
    assert len(result.history) == result.steps == 120
    assert result.final_loss < 0.05 * result.initial_loss
    assert result.report.figure("overfit.loss").series[0].y == tuple(result.history)


def test_softmax_before_cross_entropy_cannot_overfit(batch: tuple) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(DigitsCNN(), nn.Softmax(dim=1))
    result = can_overfit(model, batch, nn.CrossEntropyLoss(), steps=120, lr=3e-3)
    assert not result.passed
    finding = result.report.get("capacity.cannot_overfit")
    assert finding is not None and finding.severity.value == "error" and finding.lesson == 3
    floor = math.log(math.e + 9) - 1  # CE of a one-hot softmax with 10 classes: the best it can do
    assert result.final_loss >= floor - 1e-4
    assert finding.evidence["final_loss"] == result.final_loss


def test_user_model_gradients_and_rng_untouched(batch: tuple) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(DigitsCNN(), nn.Dropout(0.3)).eval()
    before = copy.deepcopy(model.state_dict())
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    can_overfit(model, batch, nn.CrossEntropyLoss(), steps=5)
    assert torch.equal(torch.get_rng_state(), rng)
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


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


def test_non_finite_loss_stops_and_fails(batch: tuple) -> None:
    def nan_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target) * float("nan")

    result = can_overfit(DigitsCNN(), batch, nan_loss, steps=50)
    assert not result.passed and result.steps == 1
    assert "non-finite at step 0" in result.report.get("capacity.cannot_overfit").message


@pytest.mark.parametrize(("args", "message"), [
    (((torch.zeros(2, 1, 8, 8),), nn.CrossEntropyLoss()),
     "batch must be (inputs, targets), e.g. (x, y); got tuple of length 1."),
    (((torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long)), nn.CrossEntropyLoss(reduction="none")),
     "loss_fn must return a scalar tensor; got (2,). Use reduction='mean'."),
])
def test_bad_inputs(args: tuple, message: str) -> None:
    with pytest.raises(InputError) as info:
        can_overfit(DigitsCNN(), *args, steps=2)
    assert str(info.value) == message


def test_frozen_model_is_refused() -> None:
    model = DigitsCNN().requires_grad_(False)
    with pytest.raises(InputError, match="no trainable parameter"):
        can_overfit(model, (torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long)), nn.CrossEntropyLoss())
