"""Small nets with known geometry for the model-check tests, and one CPU thread per test.

The CI machine is shared: one intra-op thread per test avoids oversubscription (restored afterwards).
Builders live on the ``nets`` fixture (pytest runs with --import-mode=importlib: no sibling imports).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Nets:
    """Builders of small nets with known geometry."""

    @staticmethod
    def circular_conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
        return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, padding_mode="circular")

    @staticmethod
    def circular_dense_net(seed: int = 0) -> nn.Sequential:
        """Stride-1 convolutions with circular padding: equivariant to circular shifts."""
        torch.manual_seed(seed)
        conv = Nets.circular_conv
        return nn.Sequential(conv(1, 8), nn.ReLU(), conv(8, 8), nn.ReLU(), nn.Conv2d(8, 2, 1))

    @staticmethod
    def pooled_dense_net(seed: int = 0) -> nn.Sequential:
        """The same net with a stride-2 max-pool inserted after the second ReLU (index 4)."""
        torch.manual_seed(seed)
        conv = Nets.circular_conv
        return nn.Sequential(conv(1, 8), nn.ReLU(), conv(8, 8), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 2, 1))

    @staticmethod
    def gap_classifier(seed: int = 0) -> nn.Sequential:
        """Circular convolutions, global average pooling, a linear classifier: invariant to circular shifts."""
        torch.manual_seed(seed)
        conv = Nets.circular_conv
        return nn.Sequential(conv(1, 8), nn.ReLU(), conv(8, 8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(8, 5))

    @staticmethod
    def flatten_classifier(seed: int = 0) -> nn.Sequential:
        """Zero padding, a max-pool and flatten + linear: a classic classifier that is not shift-invariant."""
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(8 * 8 * 8, 5))


@pytest.fixture
def nets() -> type[Nets]:
    return Nets


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(6, 1, 16, 16, generator=torch.Generator().manual_seed(1))
