"""The false-alarm corpus for check_model: healthy set-ups stay silent, every planted bug still fails.

The same healthy set-ups as the preflight corpus (MLP, CNN with batch norm, tiny BERT; SGD,
SGD + momentum, Adam, AdamW; 32 random labels or 32 real digits), the optimizer passed through to
the over-fit check; BERT gets its dict batch with labels and ``loss_fn=None``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from dldebug import check_model
from dldebug.findings import Severity

OPTIMIZERS = ("sgd", "sgd_momentum", "adam", "adamw")
CASES = [(m, d, o) for m in ("mlp", "cnn") for d in ("random", "digits") for o in OPTIMIZERS] + [
    ("bert", "random", o) for o in OPTIMIZERS]


def _case(corpus: Any, digits: Any, model_name: str, data: str) -> tuple[nn.Module, dict[str, Any]]:
    if model_name == "bert":
        return corpus.bert(), {"example_input": corpus.token_batch(), "loss_fn": None}
    if model_name == "mlp":
        model = corpus.mlp(20 if data == "random" else 64)
        x, y = corpus.random_batch((20,)) if data == "random" else (digits.x_train[:32].flatten(1),
                                                                     digits.y_train[:32])
    else:
        model = corpus.cnn()
        x, y = corpus.random_batch((1, 8, 8)) if data == "random" else (digits.x_train[:32], digits.y_train[:32])
    return model, {"example_input": x, "target": y, "loss_fn": nn.CrossEntropyLoss()}


@pytest.mark.parametrize(("model_name", "data", "optimizer"), CASES)
def test_healthy_setups_pass_check_model(corpus: Any, digits: Any, model_name: str, data: str,
                                         optimizer: str) -> None:
    model, kwargs = _case(corpus, digits, model_name, data)
    report = check_model(model, optimizer=corpus.optimizers[optimizer](model.parameters()), **kwargs)
    loud = [(f.check, f.message) for f in report.findings if f.severity >= Severity.WARNING]
    assert loud == []
    statuses = {c.check: c.status for c in report.checks}
    assert statuses["overfit"] == "passed" and "failed" not in statuses.values()
    assert statuses["equivariance"] == ("passed" if model_name == "cnn" else "skipped")


def test_planted_bugs_still_fail_check_model(corpus: Any, nets_images: torch.Tensor) -> None:
    x, y = corpus.random_batch((20,))
    softmaxed = check_model(nn.Sequential(*corpus.mlp(), nn.Softmax(1)), x, target=y, loss_fn=nn.CrossEntropyLoss())
    assert {c.check: c.status for c in softmaxed.checks}["overfit"] == "failed"
    nan = check_model(nn.Sequential(corpus.mlp(), nn.Threshold(1e9, float("nan"))), x)
    assert {c.check: c.status for c in nan.checks}["forward.finite"] == "failed"
    torch.manual_seed(0)
    pooled = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(), nn.MaxPool2d(2),
                           nn.Conv2d(4, 2, 1))
    dense = check_model(pooled, nets_images)
    assert dense.meta["task"] == "dense" and {c.check: c.status for c in dense.checks}["equivariance"] == "failed"
    with torch.device("meta"):
        head = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.Flatten(), nn.Linear(64 * 100 * 100, 512))
    huge = check_model(head, torch.randn(1, 64, 100, 100))  # a real input for a meta model: moved to meta
    assert {c.check: c.status for c in huge.checks}["capacity"] == "failed"


@pytest.fixture
def nets_images() -> torch.Tensor:
    return torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))


def _tiny_whisper() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.WhisperConfig(
        vocab_size=100, num_mel_bins=8, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=16,
        max_target_positions=32, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=3)
    return transformers.WhisperForConditionalGeneration(config).train()


def test_a_sequence_to_sequence_model_is_not_judged_as_dense() -> None:
    # Whisper's (N, T_dec, vocab) logits on (N, mel, frames) features keep three axes, but the vocabulary is
    # no resolution of the audio frames: judged as dense, its zero-padded encoder conv was a false warning.
    model = _tiny_whisper()
    g = torch.Generator().manual_seed(0)
    batch = {"input_features": torch.randn(4, 8, 32, generator=g), "labels": torch.randint(3, 100, (4, 6), generator=g)}
    report = check_model(model, batch, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3))
    assert report.meta["task"] == "classification"
    assert [(f.check, f.message) for f in report.findings if f.severity >= Severity.WARNING] == []
    assert "failed" not in {c.check: c.status for c in report.checks}.values()
