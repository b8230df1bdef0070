"""preflight on Hugging Face models with dict batches, loss_fn=None and ModelOutputs (no wrapper).

Before issue 13: ``preflight.forward_failed ... must be Tensor, not SequenceClassifierOutput`` with
a loss_fn, ``batch must be an (inputs, targets) pair; got dict`` with the model's own batch.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from dldebug import preflight
from dldebug.findings import Severity


def hf_step(model: nn.Module, batch: dict[str, torch.Tensor], loss_fn: Any, optimizer: torch.optim.Optimizer) -> Any:
    optimizer.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    return loss


def forgetful_hf_step(model: nn.Module, batch: dict[str, torch.Tensor], loss_fn: Any,
                      optimizer: torch.optim.Optimizer) -> Any:
    loss = model(**batch).loss  # the bug: no zero_grad
    loss.backward()
    optimizer.step()
    return loss


def loud(report: Any) -> list[str]:
    return sorted({f.check for f in report.findings if f.severity >= Severity.WARNING})


def test_bert_dict_batch_with_labels_and_loss_fn_none_all_checks_run_none_fires(corpus: Any) -> None:
    model = corpus.bert().train()
    report = preflight(model, corpus.token_batch(16), None, torch.optim.AdamW(model.parameters(), lr=1e-3),
                       train_step=hf_step)
    assert report.findings == ()
    statuses = {c.check: (c.status, c.reason) for c in report.checks}
    assert len(statuses) == 10 and not any(r.startswith("could not run") for _, r in statuses.values())
    skipped = {name for name, (status, _) in statuses.items() if status == "skipped"}
    assert skipped == {"preflight.input_scale"}  # token ids: nothing to normalise
    assert statuses["preflight.batch_mixing"][0] == "passed"  # through the embeddings' output


def test_bert_with_a_loss_fn_reads_the_logits_of_the_model_output(corpus: Any) -> None:
    model = corpus.bert().train()
    report = preflight(model, corpus.token_batch(16), nn.CrossEntropyLoss(), torch.optim.AdamW(model.parameters()),
                       output="logits")
    assert report.findings == ()
    assert {c.check: c.status for c in report.checks}["preflight.init_loss"] == "passed"


def test_the_issues_repro_a_tuple_batch_with_a_loss_fn_reads_the_logits(corpus: Any) -> None:
    """Before: ``preflight.forward_failed ... must be Tensor, not SequenceClassifierOutput``."""
    model, batch = corpus.bert().train(), corpus.token_batch(16)
    report = preflight(model, (batch["input_ids"], batch["labels"]), nn.CrossEntropyLoss(),
                       torch.optim.AdamW(model.parameters(), lr=1e-3), overfit_steps=0)
    assert report.findings == ()
    assert "SequenceClassifierOutput" not in " ".join(c.reason for c in report.checks)


@pytest.mark.parametrize(("bug", "expected"), [
    ("labels_out_of_range", "preflight.bad_targets"),
    ("head_not_in_optimizer", "preflight.params_not_in_optimizer"),
    ("no_zero_grad", "preflight.grad_accumulation"),
    ("eval_mode", "preflight.mode"),
])
def test_planted_bugs_fire_on_bert(corpus: Any, bug: str, expected: str) -> None:
    model, batch = corpus.bert().train(), corpus.token_batch(16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step = None
    if bug == "labels_out_of_range":
        batch["labels"] = batch["labels"] + 1  # 1-based: 10 is out of range for 10 labels
    elif bug == "head_not_in_optimizer":
        optimizer = torch.optim.AdamW(model.bert.parameters(), lr=1e-3)
    elif bug == "no_zero_grad":
        step = forgetful_hf_step
    else:
        model.eval()
    report = preflight(model, batch, None, optimizer, train_step=step, overfit_steps=0)
    assert loud(report) == [expected], report.findings
    if bug == "labels_out_of_range":
        labels = batch["labels"]
        assert report.get(expected).evidence == {"target_min": int(labels.min()), "target_max": 10, "classes": 10,
                                                 "bad_count": int((labels == 10).sum())}


def test_gpt2_language_model_loss_skips_the_class_checks_with_the_reason() -> None:
    from dldebug.demo.tiny_hf import tiny_gpt2_lm, token_batch

    model = tiny_gpt2_lm().train()
    batch = token_batch(batch=8, num_labels=None)
    batch["labels"] = batch["input_ids"]  # the model shifts them itself
    report = preflight(model, batch, None, torch.optim.AdamW(model.parameters(), lr=1e-3))
    assert report.findings == ()
    reasons = {c.check: c.reason for c in report.checks}
    assert "not a plain cross-entropy of its logits" in reasons["preflight.double_softmax"]
    assert {c.check: c.status for c in report.checks}["preflight.cannot_overfit"] == "passed"


def test_vit_classifier_pixel_values_are_checked_for_scale(corpus: Any) -> None:
    from dldebug.demo.tiny_hf import tiny_vit_classifier

    model = tiny_vit_classifier().train()
    x, y = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 5
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    assert preflight(model, {"pixel_values": x, "labels": y}, None, optimizer).findings == ()
    raw = preflight(model, {"pixel_values": x * 60 + 128, "labels": y}, None, optimizer, overfit_steps=0)
    assert "preflight.input_scale" in loud(raw)
