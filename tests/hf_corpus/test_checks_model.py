"""check_model and dldebug.testing on Hugging Face models: dict batches, loss_fn=None, ModelOutputs."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from dldebug import check_model
from dldebug.demo.tiny_hf import tiny_bert_classifier, tiny_resnet_model, tiny_vit_classifier, token_batch
from dldebug.testing import BoundCheck, assert_can_overfit, parametrize_checks


def statuses(report: Any) -> dict[str, str]:
    return {c.check: c.status for c in report.checks}


def test_bert_with_its_own_loss_runs_every_applicable_check() -> None:
    report = check_model(tiny_bert_classifier(), token_batch(batch=16))
    assert statuses(report) == {"forward.finite": "passed", "capacity": "passed", "equivariance": "skipped",
                                "transfer": "passed", "overfit": "passed"}
    assert {c.check: c.reason for c in report.checks}["equivariance"] == "needs spatial input"


def test_vit_classifier_with_pixel_values_and_a_loss_fn() -> None:
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8) % 5
    report = check_model(tiny_vit_classifier(), {"pixel_values": x}, target=y, loss_fn=nn.CrossEntropyLoss())
    assert report.meta["task"] == "classification"  # read from logits, not from the ModelOutput's type
    assert set(statuses(report).values()) == {"passed"}
    explicit = check_model(tiny_vit_classifier(), {"pixel_values": x}, task="classification", tags=("geometry",))
    assert statuses(explicit) == {"equivariance": "failed"}  # asked for invariance: the patch stride breaks it


def test_resnet_model_is_a_dense_backbone() -> None:
    report = check_model(tiny_resnet_model(), torch.randn(2, 3, 32, 32), tags=("geometry", "forward"))
    assert report.meta["task"] == "dense"  # last_hidden_state is a spatial map
    broken = report.get("equivariance.broken")
    assert broken is not None and broken.evidence["layer"] == "embedder.embedder.convolution"


def test_assert_can_overfit_and_parametrize_checks_on_bert() -> None:
    model, batch = tiny_bert_classifier(), token_batch(batch=16)
    result = assert_can_overfit(model, batch, optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    assert result.optimizer == "SGD (lr 0.05, momentum 0.9)" and result.steps < 1000
    with pytest.raises(AssertionError, match="cannot over-fit one batch: The model cannot over-fit a single batch"):
        assert_can_overfit(model.requires_grad_(False), batch)


@parametrize_checks([tiny_bert_classifier()], token_batch(batch=16), tags=("forward", "capacity", "training"))
def test_bert_suite(model: nn.Module, check: BoundCheck) -> None:
    check(model)
