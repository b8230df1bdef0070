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
