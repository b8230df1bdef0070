"""Each pre-flight finding fires on its planted bug and stays silent on the correct digits set-up."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dldebug import preflight
from dldebug.demo.digits import DigitsCNN
from dldebug.errors import InputError
from dldebug.findings import Severity

FAST = {"overfit_steps": 0}  # the over-fit test has its own cases below


def correct_step(model, batch, loss_fn, optimizer):
    optimizer.zero_grad()
    loss = loss_fn(model(batch[0]), batch[1])
    loss.backward()
    optimizer.step()
    return loss


def forgetful_step(model, batch, loss_fn, optimizer):  # the bug: no zero_grad
    loss = loss_fn(model(batch[0]), batch[1])
    loss.backward()
    optimizer.step()
    return loss


def setup(digits, **changes):
    torch.manual_seed(0)
    model = changes.pop("model", None) or DigitsCNN()
    batch = changes.pop("batch", (digits.x_train[:64], digits.y_train[:64]))
    loss_fn = changes.pop("loss_fn", nn.CrossEntropyLoss())
    optimizer = changes.pop("optimizer", None) or torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return model, batch, loss_fn, optimizer


def ids(report):
    return sorted({f.check for f in report.findings})


def test_correct_setup_is_silent_and_every_check_ran(digits):
    model, batch, loss_fn, opt = setup(digits)
    report = preflight(model, batch, loss_fn, opt, train_step=correct_step)
    assert ids(report) == []
    statuses = {c.check: c.status for c in report.checks}
    assert statuses == {name: "passed" for name in statuses}
    assert len(statuses) == 10


class Softmaxed(DigitsCNN):
    def forward(self, x):
        return super().forward(x).softmax(dim=1)


class WithUnusedHead(DigitsCNN):
    def __init__(self):
        super().__init__()
        self.unused = nn.Linear(10, 10)


class BatchMixer(DigitsCNN):
    def forward(self, x):  # the classic wrong flatten: channels and batch swapped before the reshape
        feats = self.features(x)
        flat = feats.transpose(0, 1).reshape(feats.shape[0], -1)
        return self.classifier[1:](flat)


class WithBatchNorm(DigitsCNN):
    def __init__(self):
        super().__init__()
        self.features.insert(1, nn.BatchNorm2d(16))


def planted(digits, bug):
    model, batch, loss_fn, opt = setup(digits)
    x, y = batch
    if bug == "params_not_in_optimizer":
        opt = torch.optim.SGD(model.features.parameters(), lr=0.05)
    elif bug == "no_grad":
        model = WithUnusedHead()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
    elif bug == "double_softmax":
        model = Softmaxed()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
    elif bug == "init_loss":
        model = DigitsCNN(logit_scale=60.0)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
    elif bug == "bad_targets":
        y = y + 1  # 1-based labels: 10 is out of range
    elif bug == "bad_targets_dtype":
        y = y.float()
    elif bug == "input_scale":
        x = x * 40 + 60  # raw 0..255-like pixels
    elif bug == "mode":
        model.eval()
    elif bug == "mode_bn1":
        model = WithBatchNorm()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        x, y = x[:1], y[:1]
    elif bug == "batch_mixing":
        model = BatchMixer()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
    return model, (x, y), loss_fn, opt


@pytest.mark.parametrize(
    ("bug", "expected"),
    [
        ("params_not_in_optimizer", "preflight.params_not_in_optimizer"),
        ("no_grad", "preflight.no_grad"),
        ("double_softmax", "preflight.double_softmax"),
        ("init_loss", "preflight.init_loss"),
        ("bad_targets", "preflight.bad_targets"),
        ("bad_targets_dtype", "preflight.bad_targets"),  # CrossEntropyLoss raises; preflight names the cause
        ("input_scale", "preflight.input_scale"),
        ("mode", "preflight.mode"),
        ("mode_bn1", "preflight.mode"),
        ("batch_mixing", "preflight.batch_mixing"),
    ],
)
def test_planted_bug_fires_its_finding(digits, bug, expected):
    model, batch, loss_fn, opt = planted(digits, bug)
    report = preflight(model, batch, loss_fn, opt, **FAST)
    assert expected in ids(report), report.findings
    # raw-scale inputs also make the first loss huge (a real consequence); every other bug fires alone
    consequences = {"input_scale": {"preflight.init_loss"}}.get(bug, set())
    assert set(ids(report)) - consequences == {expected}, report.findings


def test_bad_target_dtype_with_soft_targets_shape(digits):
    model, batch, loss_fn, opt = setup(digits)
    soft = torch.full((64, 10), 0.2)  # rows sum to 2: not a distribution
    report = preflight(model, (batch[0], soft), loss_fn, opt, **FAST)
    assert ids(report) == ["preflight.bad_targets"]


def test_grad_accumulation_needs_two_steps_of_the_users_loop(digits):
    model, batch, loss_fn, opt = setup(digits)
    report = preflight(model, batch, loss_fn, opt, train_step=forgetful_step, **FAST)
    assert ids(report) == ["preflight.grad_accumulation"]
    ratio = report.get("preflight.grad_accumulation").evidence["gradient_ratio"]
    assert ratio == pytest.approx(2.0, rel=0.05)
    skipped = {c.check: c for c in preflight(model, batch, loss_fn, opt, **FAST).checks}
    assert skipped["preflight.grad_accumulation"].status == "skipped"


def test_cannot_overfit_on_frozen_model(digits):
    model, batch, loss_fn, _ = setup(digits)
    for p in model.parameters():
        p.requires_grad_(False)
    model.classifier[-1].bias.requires_grad_(True)  # only 10 numbers can learn: no memorising 64 images
    opt = torch.optim.SGD([model.classifier[-1].bias], lr=0.05)
    report = preflight(model, batch, loss_fn, opt, checks=["preflight.cannot_overfit"])
    finding = report.get("preflight.cannot_overfit")
    assert finding is not None and finding.severity == Severity.ERROR and finding.lesson == 3
    assert finding.evidence["verdict"] == "stalled"
    assert finding.evidence["optimizer"] == "SGD (lr 0.05)"
    assert finding.evidence["steps"] < finding.evidence["cap"] == 1000  # stopped at the stall, not the cap
    assert "the loss stalled at" in finding.message


def test_fully_frozen_model_cannot_overfit(digits):
    model, batch, loss_fn, opt = setup(digits)
    model.requires_grad_(False)
    report = preflight(model, batch, loss_fn, opt)
    finding = report.get("preflight.cannot_overfit")
    assert finding is not None and finding.evidence["verdict"] == "frozen" and finding.evidence["steps"] == 0
    assert "no parameter can be trained" in finding.message
    assert report.get("preflight.no_grad").severity == Severity.ERROR


def test_a_small_budget_that_runs_out_is_info_not_an_error(digits):
    model, batch, loss_fn, _ = setup(digits)
    opt = torch.optim.SGD(model.parameters(), lr=0.001)  # learns, slowly
    report = preflight(model, batch, loss_fn, opt, overfit_steps=20, checks=["preflight.cannot_overfit"])
    assert ids(report) == ["preflight.overfit_unfinished"]
    finding = report.get("preflight.overfit_unfinished")
    assert finding.severity == Severity.INFO and finding.evidence["steps"] == finding.evidence["cap"] == 20
    assert finding.evidence["final_train_loss"] < finding.evidence["initial_loss"]
    assert {c.check: c.status for c in report.checks} == {"preflight.cannot_overfit": "passed"}


def test_users_model_and_optimizer_are_untouched(digits):
    model, batch, loss_fn, opt = setup(digits)
    before = copy.deepcopy(model.state_dict())
    before_opt = copy.deepcopy(opt.state_dict())
    preflight(model, batch, loss_fn, opt, train_step=forgetful_step, overfit_steps=20)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert opt.state_dict() == before_opt
    assert all(p.grad is None for p in model.parameters())


def test_forward_failure_is_one_finding_and_the_rest_skipped(digits):
    model, _, loss_fn, opt = setup(digits)
    report = preflight(model, (torch.randn(4, 3, 8, 8), torch.zeros(4, dtype=torch.long)), loss_fn, opt)
    assert ids(report) == ["preflight.forward_failed"]
    assert {c.status for c in report.checks} == {"skipped"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("not a model", None, None, None), "model must be a torch.nn.Module; got str."),
        ((nn.Linear(2, 2), torch.ones(2), None, None), "optimizer must be a torch.optim.Optimizer; got NoneType."),
        ((nn.Linear(2, 2), "x", nn.MSELoss(), torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)),
         "preflight: a batch must be (inputs, targets), a tensor, or a dict of the model's keyword arguments; "
         "got str."),
        ((nn.Linear(2, 2), (torch.ones(0, 2), torch.ones(0, 2)), nn.MSELoss(),
          torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)),
         "preflight: the batch inputs need a batch dimension with at least one sample; got shape (0, 2)."),
    ],
)
def test_bad_arguments(args, message):
    with pytest.raises(InputError) as info:
        preflight(*args)
    assert str(info.value) == message


def test_dldebug_preflight_is_callable_whatever_the_import_order() -> None:
    import subprocess
    import sys

    code = ("import dldebug.preflight, dldebug, torch\n"
            "m = torch.nn.Linear(3, 2)\n"
            "r = dldebug.preflight(m, (torch.randn(4, 3), torch.tensor([0, 1, 0, 1])), torch.nn.CrossEntropyLoss(),"
            " torch.optim.SGD(m.parameters(), lr=0.1), overfit_steps=0)\n"
            "print(type(r).__name__, callable(dldebug.preflight), dldebug.preflight.TrainingSetup.__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["Report", "True", "TrainingSetup"]
