"""Real acceptance (lesson 8): a CRNN on digit sequences; the missing blank is caught before training,
and the fixed model trains to > 85% held-out sequence accuracy with CheckedCTCLoss."""

from __future__ import annotations

import itertools

import pytest
import torch

from dldebug import check_ctc
from dldebug.demo.ctc_digits import (
    CRNN,
    FRAMES_PER_DIGIT,
    digit_sequence_split,
    greedy_decode,
    make_sequences,
    train_crnn,
)
from dldebug.nn import CheckedCTCLoss


def test_sequences_hold_their_digits_and_repeats(digits) -> None:
    data = make_sequences(digits.x_test, digits.y_test, 200, seed=3)
    assert data.images.shape == (200, 1, 8, 40)
    assert set(data.target_lengths.tolist()) == {2, 3, 4, 5}
    assert torch.equal(data.input_lengths, data.target_lengths * FRAMES_PER_DIGIT)
    repeats = sum(any(a == b for a, b in itertools.pairwise(d)) for d in map(data.digits, range(len(data))))
    assert repeats > 40  # adjacent repeats are common, so the blank between them matters
    # every 8-column block is a test digit image of the labelled class (naive search as the oracle)
    for n in range(5):
        for k, digit in enumerate(data.digits(n)):
            block = data.images[n, 0, :, 8 * k:8 * (k + 1)]
            matches = (digits.x_test[:, 0] == block).flatten(1).all(1)
            assert matches.any() and set(digits.y_test[matches].tolist()) == {digit}


def test_greedy_decode_merges_repeats_and_drops_blanks() -> None:
    best_paths = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0], [0, 3, 3, 3, 0, 3, 0, 4]])  # (N, T)
    log_probs = torch.nn.functional.one_hot(best_paths.T, 5).float().log()
    assert greedy_decode(log_probs, torch.tensor([8, 7])) == [[1, 1, 2], [3, 3]]


@pytest.mark.slow
def test_crnn_missing_blank_is_caught_then_the_fix_trains(digits) -> None:
    train, test = digit_sequence_split(digits)
    batch = slice(0, 64)
    args = (train.targets[batch], train.input_lengths[batch], train.target_lengths[batch])
    torch.manual_seed(0)
    buggy = CRNN(num_classes=10)  # 10 digits, 10 outputs: the lesson's bug
    with torch.no_grad():
        log_probs = buggy(train.images[batch])
    assert check_ctc(log_probs, *args, num_labels=10).has("ctc.missing_blank")
    assert check_ctc(log_probs, *args).get("ctc.missing_blank").evidence["inferred"] is True

    torch.manual_seed(0)
    model = CRNN(num_classes=11)
    loss_fn = CheckedCTCLoss(num_labels=10)
    history = train_crnn(model, train, test, epochs=5, loss_fn=loss_fn)
    assert loss_fn.last_report is not None and not loss_fn.last_report.filter(min_severity="warning")
    print(f"CRNN: held-out sequence accuracy per epoch {history.test_accuracy}, {history.seconds:.1f} s")
    assert history.test_accuracy[-1] > 0.85
    assert history.losses[-1] < 0.1 * history.losses[0]
