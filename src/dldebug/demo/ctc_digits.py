"""Sequences of 8x8 digits and a small CRNN trained with CTC (lesson 8's real set-up).

Each image is 2 to 5 of scikit-learn's 8x8 digits side by side (8 pixels tall,
8 per digit wide, padded to 40 with the background value); adjacent digits
repeat on purpose, so CTC must learn to put a blank between them. Training
sequences use only training images and held-out sequences only test images.

The CRNN turns every 2 pixel columns into one CTC frame (4 frames per digit).
``CRNN(num_classes=10)`` is the lesson's bug (no room for the blank);
``CRNN(num_classes=11)`` is the fix. Class 0 is the blank, digit d is label d+1.

Example:
    >>> import torch
    >>> model = CRNN(num_classes=11)
    >>> model(torch.zeros(3, 1, 8, 40)).shape  # (T, N, C)
    torch.Size([20, 3, 11])
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from dldebug.demo.digits import DigitsData

__all__ = [
    "CRNN",
    "FRAMES_PER_DIGIT",
    "CTCTrainHistory",
    "DigitSequences",
    "digit_sequence_split",
    "greedy_decode",
    "make_sequences",
    "sequence_accuracy",
    "train_crnn",
]

FRAMES_PER_DIGIT = 4
MAX_DIGITS = 5


@dataclass(frozen=True)
class DigitSequences:
    """Images of digit sequences and their CTC targets (blank = 0, digit d -> label d + 1).

    Attributes:
        images: (N, 1, 8, 8 * 5) float, padded on the right with the background value.
        targets: (N, 5) int64 labels, padded with 0 after each sequence's length.
        target_lengths: (N,) number of digits per sequence.
        input_lengths: (N,) CTC frames per sequence (4 per digit).
    """

    images: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor
    input_lengths: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def digits(self, index: int) -> list[int]:
        """The digits of sequence ``index`` (labels minus one)."""
        length = int(self.target_lengths[index])
        return [int(v) - 1 for v in self.targets[index, :length]]


def make_sequences(images: torch.Tensor, labels: torch.Tensor, count: int, *, min_digits: int = 2,
                   max_digits: int = MAX_DIGITS, repeat_probability: float = 0.25,
                   seed: int = 0) -> DigitSequences:
    """Build ``count`` digit sequences from single digit images, with deliberate adjacent repeats.

    Args:
        images: (M, 1, 8, 8) single digits (e.g. ``DigitsData.x_train``).
        labels: (M,) their digits 0..9.
        count: number of sequences.
        repeat_probability: chance that a digit repeats the previous one (a different image of it).
        seed: seed of the generator (fixed, so data sets are reproducible).

    Returns:
        The sequences, padded to ``max_digits`` digits.
    """
    rng = np.random.default_rng(seed)
    by_digit = [np.flatnonzero(labels.numpy() == d) for d in range(10)]
    background = float(images.min())
    out = torch.full((count, 1, 8, 8 * max_digits), background, dtype=images.dtype)
    targets = torch.zeros((count, max_digits), dtype=torch.int64)
    lengths = torch.from_numpy(rng.integers(min_digits, max_digits + 1, size=count)).to(torch.int64)
    for n in range(count):
        digit = int(rng.integers(10))
        for k in range(int(lengths[n])):
            if k > 0 and rng.random() >= repeat_probability:
                digit = int(rng.integers(10))
            image = images[int(rng.choice(by_digit[digit]))]
            out[n, :, :, 8 * k:8 * (k + 1)] = image
            targets[n, k] = digit + 1
    return DigitSequences(out, targets, lengths, lengths * FRAMES_PER_DIGIT)


class CRNN(nn.Module):
    """A convolution, a 2x2 max-pool, a second convolution, a bidirectional GRU and a per-frame classifier.

    Args:
        num_classes: outputs per frame; the labels plus one for the blank (11 for digits).
        width: channels of the first convolution (the second has twice as many).
        hidden: GRU units per direction.

    Returns (forward):
        Log-probabilities (T, N, num_classes) with T = image width / 2.
    """

    def __init__(self, num_classes: int = 11, width: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
        )
        self.rnn = nn.GRU(2 * width * 4, hidden, bidirectional=True)
        self.head = nn.Linear(2 * hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)  # (N, 2w, 4, W/2)
        frames = features.flatten(1, 2).permute(2, 0, 1)  # (T, N, 2w*4)
        hidden, _ = self.rnn(frames)
        return self.head(hidden).log_softmax(-1)


def greedy_decode(log_probs: torch.Tensor, input_lengths: torch.Tensor, *, blank: int = 0) -> list[list[int]]:
    """Best path decoding: argmax per frame, merge repeats, drop blanks.

    Example:
        >>> lp = torch.log(torch.tensor([[[.1, .9]], [[.1, .9]], [[.9, .1]], [[.1, .9]]]))
        >>> greedy_decode(lp, torch.tensor([4]))
        [[1, 1]]
    """
    best = log_probs.argmax(-1).T.tolist()  # (N, T)
    decoded = []
    for path, length in zip(best, input_lengths.tolist(), strict=True):
        labels, previous = [], blank
        for label in path[:length]:
            if label != previous and label != blank:
                labels.append(label)
            previous = label
        decoded.append(labels)
    return decoded


def sequence_accuracy(model: nn.Module, data: DigitSequences, *, batch_size: int = 512) -> float:
    """Fraction of sequences whose greedy decoding equals the target exactly."""
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            stop = start + batch_size
            decoded = greedy_decode(model(data.images[start:stop]), data.input_lengths[start:stop])
            targets = data.targets[start:stop].tolist()
            lengths = data.target_lengths[start:stop].tolist()
            correct += sum(d == t[:n] for d, t, n in zip(decoded, targets, lengths, strict=True))
    model.train(was_training)
    return correct / max(len(data), 1)


@dataclass
class CTCTrainHistory:
    """Per-step CTC losses, per-epoch held-out sequence accuracy and the wall time."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    epoch_steps: list[int] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0


def train_crnn(model: nn.Module, train: DigitSequences, test: DigitSequences, *, epochs: int = 6,
               lr: float = 5e-3, batch_size: int = 64, seed: int = 0,
               loss_fn: nn.Module | None = None) -> CTCTrainHistory:
    """Train ``model`` with CTC (Adam) for real and record loss and held-out sequence accuracy.

    Args:
        loss_fn: the CTC loss module; ``nn.CTCLoss(blank=0)`` by default (a
            ``dldebug.nn.CheckedCTCLoss`` drops in).
    """
    loss_fn = loss_fn if loss_fn is not None else nn.CTCLoss(blank=0)
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = CTCTrainHistory()
    start_time = time.perf_counter()
    step = 0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train), batch_size):
            idx = order[start:start + batch_size]
            opt.zero_grad(set_to_none=True)
            log_probs = model(train.images[idx])
            loss = loss_fn(log_probs, train.targets[idx], train.input_lengths[idx], train.target_lengths[idx])
            loss.backward()
            opt.step()
            history.steps.append(step)
            history.losses.append(float(loss.detach()))
            step += 1
        history.epoch_steps.append(step - 1)
        history.test_accuracy.append(sequence_accuracy(model, test))
    history.seconds = time.perf_counter() - start_time
    return history


def digit_sequence_split(data: DigitsData, *, train_count: int = 3000, test_count: int = 600,
                         seed: int = 0) -> tuple[DigitSequences, DigitSequences]:
    """Training sequences from training digits and held-out sequences from test digits."""
    train = make_sequences(data.x_train, data.y_train, train_count, seed=seed)
    test = make_sequences(data.x_test, data.y_test, test_count, seed=seed + 1)
    return train, test
