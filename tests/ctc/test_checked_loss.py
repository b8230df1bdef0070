"""CheckedCTCLoss: the same values and gradients as nn.CTCLoss, plus checks and named inf/NaN samples."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from torch import nn

import dldebug.nn.ctc_loss as ctc_loss_module
from dldebug.errors import ConfigError, TrainingCheckError
from dldebug.nn import CheckedCTCLoss
from dldebug.nn.ctc_loss import CTCCheckWarning, NonFiniteCTCLossError


def _loss_and_grad(loss_fn: nn.Module, logits: torch.Tensor, targets, input_lengths, target_lengths):
    x = logits.clone().requires_grad_()
    loss = loss_fn(x.log_softmax(-1), targets, input_lengths, target_lengths)
    (loss * torch.linspace(0.5, 1.5, loss.numel()).reshape(loss.shape)).sum().backward()
    return loss.detach(), x.grad


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("concatenated", [False, True])
@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("check", ["first", "always", "never"])
def test_equals_nn_ctcloss_values_and_gradients(make_setup, reduction: str, concatenated: bool,
                                                zero_infinity: bool, check: str) -> None:
    s = make_setup(seed=7, concatenated=concatenated)
    logits = torch.randn(s.log_probs.shape, generator=torch.Generator().manual_seed(1))
    args = (s.targets, s.input_lengths, s.target_lengths)
    expected, expected_grad = _loss_and_grad(nn.CTCLoss(reduction=reduction, zero_infinity=zero_infinity),
                                             logits, *args)
    checked = CheckedCTCLoss(reduction=reduction, zero_infinity=zero_infinity, check=check)  # type: ignore[arg-type]
    for _ in range(2):  # first and later batches take different paths
        loss, grad = _loss_and_grad(checked, logits, *args)
        torch.testing.assert_close(loss, expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-6)


def test_equals_nn_ctcloss_with_tuple_lengths_and_float64(make_setup) -> None:
    s = make_setup(seed=3, dtype=torch.float64)
    il, tl = tuple(s.input_lengths.tolist()), tuple(s.target_lengths.tolist())
    logits = s.log_probs.double()
    expected, grad = _loss_and_grad(nn.CTCLoss(blank=0), logits, s.targets, il, tl)
    loss, checked_grad = _loss_and_grad(CheckedCTCLoss(blank=0), logits, s.targets, il, tl)
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(checked_grad, grad, rtol=0, atol=1e-12)


def test_checks_run_on_first_batch_only_by_default(make_setup) -> None:
    s = make_setup()
    first = CheckedCTCLoss()
    first(*s.args())
    report = first.last_report
    assert report is not None and report.ok
    first(*s.args())
    assert first.last_report is report and first.batches_seen == 2
    always = CheckedCTCLoss(check="always")
    always(*s.args())
    previous = always.last_report
    always(*s.args())
    assert always.last_report is not previous
    never = CheckedCTCLoss(check="never")
    never(*s.args())
    assert never.last_report is None


def test_setup_error_raises_before_the_loss(make_setup) -> None:
    s = make_setup()
    lp = torch.randn(*s.log_probs.shape[:2], 7).log_softmax(-1)  # 7 labels, 7 classes: no blank
    with pytest.raises(TrainingCheckError, match=re.escape(
            "CTC set-up check failed on batch 0 (1 error(s)):\n  ctc.missing_blank: log_probs has C=7 classes "
            "for 7 labels: no room for the blank (CTC needs C = num_labels + 1 = 8). Fix: Give the layer")):
        CheckedCTCLoss(num_labels=7)(lp, s.targets.clamp_max(6), s.input_lengths, s.target_lengths)


def test_nonfinite_loss_names_samples_and_reasons(make_setup) -> None:
    s = make_setup()
    s.targets[2] = 3
    s.target_lengths[2] = 4
    s.input_lengths[2] = 6  # 4 labels + 3 repeats = 7 frames needed
    with pytest.raises(NonFiniteCTCLossError) as caught:
        CheckedCTCLoss(check="never")(*s.args())
    error = caught.value
    assert error.samples == [2] and error.batch == 0
    assert error.reasons == {2: "input length T=6 < target length L=4 + 3 adjacent repeat(s) = 7 frames CTC needs"}
    assert str(error).startswith("CTC loss is inf/NaN for 1 of 6 sample(s) in batch 0:\n  sample 2: input length")


def test_nan_log_probs_are_named_after_the_first_batch(make_setup) -> None:
    s = make_setup()
    loss_fn = CheckedCTCLoss()
    loss_fn(*s.args())  # the first batch is clean
    s.log_probs[0, 4, :] = float("nan")
    with pytest.raises(NonFiniteCTCLossError) as caught:
        loss_fn(*s.args())
    assert caught.value.samples == [4] and caught.value.batch == 1
    assert caught.value.reasons[4] == f"log_probs hold NaN in 1 of its {int(s.input_lengths[4])} frames"


def test_warn_mode_warns_and_returns_the_loss(make_setup) -> None:
    s = make_setup()
    s.input_lengths[1] = 1
    with pytest.warns(CTCCheckWarning) as record:
        loss = CheckedCTCLoss(reduction="none", on_error="warn")(*s.args())
    assert torch.isinf(loss[1]) and torch.isfinite(loss[0])
    messages = [str(w.message) for w in record]
    assert any("ctc.infeasible_length" in m and "(samples [1])" in m for m in messages)
    assert any(m.startswith("CTC loss is inf/NaN for 1 of 6") for m in messages)


def test_empty_target_warns_but_does_not_raise(make_setup) -> None:
    s = make_setup()
    s.target_lengths[0] = 0
    with pytest.warns(CTCCheckWarning, match="ctc.empty_target: 1 sample"):
        loss = CheckedCTCLoss()(*s.args())
    assert torch.isfinite(loss)


def test_deferred_check_reports_one_call_late(make_setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """The accelerator path (no host sync per step), exercised on CPU."""
    monkeypatch.setattr(ctc_loss_module, "_deferrable", lambda device: True)
    good, bad = make_setup(), make_setup()
    bad.input_lengths[3] = 2
    loss_fn = CheckedCTCLoss()
    loss_fn(*good.args())
    loss_fn(*bad.args())  # batch 1 is non-finite, but not read yet
    with pytest.raises(NonFiniteCTCLossError) as caught:
        loss_fn(*good.args())
    assert caught.value.batch == 1 and caught.value.samples == [3]
    loss_fn(*bad.args())
    with pytest.raises(NonFiniteCTCLossError):
        loss_fn.flush()
    loss_fn.flush()  # nothing pending any more
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss_fn(*good.args())


def test_zero_infinity_hides_inf_but_the_first_batch_check_still_names_it(make_setup) -> None:
    s = make_setup()
    s.input_lengths[0] = 1
    loss_fn = CheckedCTCLoss(zero_infinity=True, on_error="warn")
    with pytest.warns(CTCCheckWarning, match="ctc.infeasible_length"):
        loss = loss_fn(*s.args())
    assert torch.isfinite(loss)


@pytest.mark.parametrize(("kwargs", "text"), [
    ({"check": "sometimes"}, "check must be one of 'first', 'always', 'never'; got 'sometimes'."),
    ({"on_error": "ignore"}, "on_error must be 'raise' or 'warn'; got 'ignore'."),
    ({"reduction": "avg"}, "reduction must be one of 'none', 'mean', 'sum'; got 'avg'."),
    ({"num_labels": 0}, "num_labels must be a positive int or None; got 0."),
])
def test_bad_options_raise_config_errors(kwargs: dict, text: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(text)):
        CheckedCTCLoss(**kwargs)


def test_is_a_drop_in_module() -> None:
    loss_fn = CheckedCTCLoss(blank=2, num_labels=4)
    assert isinstance(loss_fn, nn.CTCLoss)
    assert repr(loss_fn) == ("CheckedCTCLoss(blank=2, reduction='mean', zero_infinity=False, num_labels=4, "
                             "check='first', on_error='raise')")


def test_equals_nn_ctcloss_unbatched(make_setup) -> None:
    s = make_setup(seed=5)
    length = int(s.target_lengths[0])
    args = (s.targets[0, :length], s.input_lengths[0], s.target_lengths[0])  # 0-dim lengths
    logits = torch.randn(s.log_probs.shape[0], s.log_probs.shape[2], generator=torch.Generator().manual_seed(2))
    expected, expected_grad = _loss_and_grad(nn.CTCLoss(), logits, *args)
    loss, grad = _loss_and_grad(CheckedCTCLoss(check="always"), logits, *args)
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-6)
