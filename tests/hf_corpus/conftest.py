"""The healthy and the planted set-ups of the acceptance corpus (issue 13), one CPU thread per test.

Builders live on the ``corpus`` fixture (pytest runs with --import-mode=importlib: no sibling imports).
Every model is built in-process from a tiny config with random weights: nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

pytest.importorskip("transformers")

OPTIMIZERS: dict[str, Callable[[Any], torch.optim.Optimizer]] = {
    "sgd": lambda params: torch.optim.SGD(params, lr=0.05),
    "sgd_momentum": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
    "adam": lambda params: torch.optim.Adam(params, lr=1e-3),
    "adamw": lambda params: torch.optim.AdamW(params, lr=1e-3),
}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Corpus:
    """Builders of the corpus models and batches (seeded)."""

    optimizers = OPTIMIZERS

    @staticmethod
    def mlp(inputs: int = 20, seed: int = 0) -> nn.Sequential:
        """The issue's 20-64-64-10 MLP."""
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(inputs, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    @staticmethod
    def cnn(seed: int = 0) -> nn.Sequential:
        """A small CNN with batch norm for 1x8x8 images."""
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                             nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(32 * 4 * 4, 10))

    @staticmethod
    def bert(seed: int = 0) -> nn.Module:
        from dldebug.demo.tiny_hf import tiny_bert_classifier

        return tiny_bert_classifier(num_labels=10, seed=seed)

    @staticmethod
    def token_batch(size: int = 32) -> dict[str, torch.Tensor]:
        from dldebug.demo.tiny_hf import token_batch

        return token_batch(batch=size, num_labels=10)

    @staticmethod
    def random_batch(shape: tuple[int, ...], size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` standard-normal inputs with uniformly random labels among 10 classes."""
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(size, *shape, generator=generator), torch.randint(0, 10, (size,), generator=generator)


@pytest.fixture
def corpus() -> type[Corpus]:
    return Corpus
