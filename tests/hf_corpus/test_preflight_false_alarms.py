"""The false-alarm corpus for preflight: healthy set-ups stay silent, every planted bug still fires.

Healthy: a 20-64-64-10 MLP, a small CNN with batch norm and a tiny BERT, each with SGD 0.05,
SGD + momentum 0.9, Adam 1e-3 and AdamW 1e-3, on a batch of 32 random labels and of 32 real digits
(sklearn's load_digits). Before issue 13 every MLP and CNN case got an error-level
``preflight.cannot_overfit`` ("loss 2.3 -> 0.133 in 100 steps"): the over-fit test ignored the
optimizer and ran Adam 1e-3 for a fixed 100 steps.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from dldebug import preflight
from dldebug.findings import Severity

OPTIMIZERS = ("sgd", "sgd_momentum", "adam", "adamw")


def _healthy(corpus: Any, digits: Any, model_name: str, data: str) -> tuple[nn.Module, Any, Any]:
    if model_name == "bert":
        return corpus.bert(), corpus.token_batch(), None
    if model_name == "mlp":
        model = corpus.mlp(20 if data == "random" else 64)
        batch = corpus.random_batch((20,)) if data == "random" else (digits.x_train[:32].flatten(1),
                                                                      digits.y_train[:32])
    else:
        model = corpus.cnn()
        batch = corpus.random_batch((1, 8, 8)) if data == "random" else (digits.x_train[:32], digits.y_train[:32])
    return model, batch, nn.CrossEntropyLoss()


CASES = [(m, d, o) for m in ("mlp", "cnn") for d in ("random", "digits") for o in OPTIMIZERS] + [
    ("bert", "random", o) for o in OPTIMIZERS]


@pytest.mark.parametrize(("model_name", "data", "optimizer"), CASES)
def test_healthy_setups_get_no_warning_or_error(corpus: Any, digits: Any, model_name: str, data: str,
                                                optimizer: str) -> None:
    model, batch, loss_fn = _healthy(corpus, digits, model_name, data)
    model.train()
    report = preflight(model, batch, loss_fn, corpus.optimizers[optimizer](model.parameters()))
    loud = [(f.check, f.message) for f in report.findings if f.severity >= Severity.WARNING]
    assert loud == []
    statuses = {c.check: c.status for c in report.checks}
    assert statuses["preflight.cannot_overfit"] == "passed", report.findings
    assert "failed" not in statuses.values()
    assert not any(c.reason.startswith("could not run") for c in report.checks), report.checks


class BatchMixer(nn.Module):
    """The classic wrong flatten: channels and batch swapped before the reshape."""

    def __init__(self, corpus: Any) -> None:
        super().__init__()
        self.cnn = corpus.cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.cnn[:7](x)
        return self.cnn[8](features.transpose(0, 1).reshape(features.shape[0], -1))


def _planted(corpus: Any, digits: Any, bug: str) -> tuple[nn.Module, Any, Any, torch.optim.Optimizer]:
    """A healthy set-up with one bug planted; SGD + momentum unless the bug is about the optimizer."""
    model: nn.Module = corpus.mlp()
    batch: Any = corpus.random_batch((20,))
    if bug == "softmax":
        model = nn.Sequential(*corpus.mlp(), nn.Softmax(dim=1))
    elif bug == "frozen":
        model.requires_grad_(False)
    elif bug == "bottleneck":  # a width-1 layer before the 10-class head, random labels
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 1), nn.Linear(1, 10))
    elif bug == "raw_pixels":
        batch = (batch[0] * 60 + 128, batch[1])
    elif bug in ("eval_mode", "batch_mixing", "one_based_labels"):
        model = corpus.cnn() if bug != "batch_mixing" else BatchMixer(corpus)
        batch = (digits.x_train[:32], digits.y_train[:32] + (1 if bug == "one_based_labels" else 0))
        if bug == "eval_mode":
            model.eval()
    make = corpus.optimizers["sgd" if bug == "bottleneck" else "sgd_momentum"]
    optimizer = make(model.parameters())
    return model, batch, nn.CrossEntropyLoss(), optimizer


@pytest.mark.parametrize(("bug", "expected"), [
    ("softmax", {"preflight.double_softmax", "preflight.cannot_overfit"}),
    ("frozen", {"preflight.no_grad", "preflight.cannot_overfit"}),
    ("bottleneck", {"preflight.cannot_overfit"}),
    ("raw_pixels", {"preflight.input_scale"}),
    ("eval_mode", {"preflight.mode"}),
    ("batch_mixing", {"preflight.batch_mixing"}),
    ("one_based_labels", {"preflight.bad_targets"}),
])
def test_each_planted_bug_still_fires(corpus: Any, digits: Any, bug: str, expected: set[str]) -> None:
    model, batch, loss_fn, optimizer = _planted(corpus, digits, bug)
    report = preflight(model, batch, loss_fn, optimizer)
    loud = {f.check for f in report.findings if f.severity >= Severity.WARNING}
    # raw 0..255-scale inputs also make the first loss huge and SGD + momentum unstable: real consequences
    consequences = {"preflight.init_loss", "preflight.cannot_overfit"} if bug == "raw_pixels" else set()
    assert expected <= loud <= expected | consequences, report.findings
    overfit = report.get("preflight.cannot_overfit")
    if overfit is not None and bug != "raw_pixels":
        assert overfit.severity == Severity.ERROR
        assert overfit.evidence["verdict"] == {"softmax": "stalled", "frozen": "frozen"}.get(bug, "crawling")
