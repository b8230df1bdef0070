"""Small models and data for the compression tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class SharedTwice(nn.Module):
    """One Linear applied twice: y = fc(relu(fc(x)))."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.fc(x)))


class Nested(nn.Module):
    """Linear layers nested in Sequential and ModuleDict, plus a 1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(12, 24, 1, stride=2, padding=1), nn.ReLU())
        self.blocks = nn.ModuleDict({"a": nn.Sequential(nn.Linear(24 * 25, 40), nn.ReLU()),
                                     "b": nn.Linear(40, 30)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x).flatten(1)
        return self.blocks["b"](self.blocks["a"](h))


def low_rank_plus_noise(m: int, n: int, rank: int, noise: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(3.0, 1.0, rank)
    return (torch.randn(m, rank, generator=g) * scale) @ torch.randn(rank, n, generator=g) / n ** 0.5 \
        + noise * torch.randn(m, n, generator=g)


@pytest.fixture
def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(48, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        net[0].weight.copy_(low_rank_plus_noise(64, 48, 6, 0.05, seed=1))
        net[2].weight.copy_(low_rank_plus_noise(32, 64, 5, 0.05, seed=2))
    return net.eval()


@pytest.fixture
def correlated_inputs() -> torch.Tensor:
    """Inputs living mostly in a few directions: where data-aware factors must win."""
    g = torch.Generator().manual_seed(3)
    basis = torch.randn(6, 48, generator=g)
    return torch.randn(600, 6, generator=g) @ basis + 0.05 * torch.randn(600, 48, generator=g)


@pytest.fixture
def shared_twice() -> SharedTwice:
    torch.manual_seed(0)
    return SharedTwice(16)


@pytest.fixture
def nested() -> Nested:
    torch.manual_seed(0)
    return Nested().eval()
