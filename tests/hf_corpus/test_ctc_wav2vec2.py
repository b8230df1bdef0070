"""CTC tools on a real Hugging Face CTC model: Wav2Vec2ForCTC from a tiny config (random weights).

Wav2Vec2's CTC head has ``vocab_size`` outputs and uses ``pad_token_id`` (0 here) as the blank, so
its labels are the other ``vocab_size - 1`` classes; HF pads label rows with -100.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from dldebug.ctc import check_ctc
from dldebug.demo.tiny_hf import tiny_wav2vec2_ctc
from dldebug.nn import CheckedCTCLoss

VOCAB = 12


@pytest.fixture(scope="module")
def run() -> dict[str, torch.Tensor]:
    model = tiny_wav2vec2_ctc(vocab_size=VOCAB)
    generator = torch.Generator().manual_seed(0)
    audio = torch.randn(3, 1600, generator=generator)
    labels = torch.randint(1, VOCAB, (3, 6), generator=generator)
    labels[2, 4:] = -100  # a shorter transcript, padded the HF way
    with torch.no_grad():
        out = model(input_values=audio, labels=labels)
    frames = out.logits.shape[1]
    return {"logits": out.logits, "labels": labels, "hf_loss": out.loss,
            "input_lengths": torch.full((3,), frames), "target_lengths": (labels >= 0).sum(1)}


def _log_probs(run: dict[str, torch.Tensor]) -> torch.Tensor:
    return run["logits"].log_softmax(-1).transpose(0, 1)  # (T, N, C) as nn.CTCLoss takes it


def test_healthy_wav2vec2_setup_has_no_warning(run: dict[str, torch.Tensor]) -> None:
    targets = run["labels"].clamp(min=0)  # padding past target_lengths is never read
    report = check_ctc(_log_probs(run), targets, run["input_lengths"], run["target_lengths"], blank=0,
                       num_labels=VOCAB - 1)
    assert [f.check for f in report.filter(min_severity="warning")] == []


def test_label_at_the_vocab_size_is_out_of_range(run: dict[str, torch.Tensor]) -> None:
    targets = run["labels"].clamp(min=0).clone()
    targets[1, 2] = VOCAB  # a tokenizer with one more symbol than the CTC head
    report = check_ctc(_log_probs(run), targets, run["input_lengths"], run["target_lengths"], blank=0)
    assert report.has("ctc.target_out_of_range")


def test_blank_used_as_a_label_is_found(run: dict[str, torch.Tensor]) -> None:
    targets = run["labels"].clamp(min=0).clone()
    targets[0, 1] = 0  # the pad/blank id inside a transcript
    report = check_ctc(_log_probs(run), targets, run["input_lengths"], run["target_lengths"], blank=0)
    assert report.has("ctc.blank_in_targets")


def test_checked_ctc_loss_equals_the_model_own_loss(run: dict[str, torch.Tensor]) -> None:
    flat = run["labels"][run["labels"] >= 0]  # HF concatenates the real labels
    loss = CheckedCTCLoss(blank=0, reduction="sum")(_log_probs(run).float(), flat, run["input_lengths"],
                                                   run["target_lengths"])
    assert torch.allclose(loss, run["hf_loss"], rtol=1e-5), (float(loss), float(run["hf_loss"]))
