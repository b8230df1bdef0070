"""The embedded default scenario: scikit-learn's 8x8 digits and a small CNN.

1,797 images ship with scikit-learn, so nothing is downloaded. Every demo
scenario and many acceptance tests train these models for real on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

__all__ = ["DigitsCNN", "DigitsData", "TrainHistory", "accuracy", "load_digits_data", "train_digits"]


@dataclass(frozen=True)
class DigitsData:
    """Train/test tensors: images (N, 1, 8, 8) scaled to zero mean, unit variance; labels (N,) int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def num_classes(self) -> int:
        return 10


def load_digits_data(*, test_fraction: float = 0.25, seed: int = 0, normalise: bool = True) -> DigitsData:
    """Load sklearn's digits, split them with a fixed seed, and normalise with train statistics."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32)  # (1797, 8, 8), values 0..16
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = round(len(labels) * test_fraction)
    test_idx, train_idx = order[:n_test], order[n_test:]
    x = torch.from_numpy(images).unsqueeze(1)
    if normalise:
        mean, std = x[train_idx].mean(), x[train_idx].std()
        x = (x - mean) / std
    y = torch.from_numpy(labels)
    return DigitsData(x[train_idx], y[train_idx], x[test_idx], y[test_idx])


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions, a 2x2 max-pool and two linear layers for 1x8x8 digits.

    Args:
        num_classes: outputs of the last layer.
        width: channels of the first convolution (the second has twice as many).
        logit_scale: multiplies the logits (values > 1 make an over-confident head).
    """

    def __init__(self, num_classes: int = 10, width: int = 16, logit_scale: float = 1.0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * 16, 64), nn.ReLU(), nn.Linear(64, num_classes),
        )
        self.logit_scale = logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.features(x))
        return logits * self.logit_scale if self.logit_scale != 1.0 else logits


@dataclass
class TrainHistory:
    """Per-step losses and per-epoch test accuracy of a training run."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    epoch_steps: list[int] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on (x, y), evaluated without gradients in eval mode."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
    model.train(was_training)
    return float((pred == y).float().mean())


def train_digits(
    model: nn.Module,
    data: DigitsData,
    *,
    epochs: int = 8,
    lr: float = 1e-3,
    batch_size: int = 64,
    optimizer: str = "adam",
    seed: int = 0,
    scheduler_factory: Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler] | None = None,
    on_step: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
) -> TrainHistory:
    """Train ``model`` on the digits for real and return the history.

    Args:
        on_step: called after each optimiser step with (step, loss, logits, targets),
            e.g. ``monitor.observe``-style hooks.
    """
    generator = torch.Generator().manual_seed(seed)
    opt: torch.optim.Optimizer
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd'; got {optimizer!r}")
    scheduler = scheduler_factory(opt) if scheduler_factory else None
    loss_fn = nn.CrossEntropyLoss()
    history = TrainHistory()
    step = 0
    n = len(data.y_train)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            xb, yb = data.x_train[idx], data.y_train[idx]
            opt.zero_grad(set_to_none=True)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            loss.backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()
            history.steps.append(step)
            history.losses.append(float(loss.detach()))
            history.lrs.append(float(opt.param_groups[0]["lr"]))
            if on_step is not None:
                on_step(step, loss.detach(), logits.detach(), yb)
            step += 1
        history.epoch_steps.append(step - 1)
        history.test_accuracy.append(accuracy(model, data.x_test, data.y_test))
    return history
