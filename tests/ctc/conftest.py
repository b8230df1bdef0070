"""Shared CTC test helpers: a valid random set-up in padded or concatenated form."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch


@dataclass
class Setup:
    log_probs: torch.Tensor  # (T, N, C) log-softmax output
    targets: torch.Tensor  # padded (N, S) or concatenated
    input_lengths: torch.Tensor
    target_lengths: torch.Tensor

    def args(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.log_probs, self.targets, self.input_lengths, self.target_lengths


def valid_setup(*, T: int = 40, N: int = 6, C: int = 8, S: int = 6, seed: int = 0,
                concatenated: bool = False, dtype: torch.dtype = torch.float32) -> Setup:
    """A CTC batch with blank 0, labels 1..C-1, repeats, and input lengths that always suffice."""
    g = torch.Generator().manual_seed(seed)
    log_probs = torch.randn(T, N, C, generator=g, dtype=dtype).log_softmax(-1)
    target_lengths = torch.randint(1, S + 1, (N,), generator=g)
    targets = torch.randint(1, C, (N, S), generator=g)
    targets[:, 1] = targets[:, 0]  # a repeat in every sample of length >= 2
    input_lengths = torch.randint(2 * S, T + 1, (N,), generator=g)
    input_lengths[0] = T
    if concatenated:
        targets = torch.cat([targets[i, :int(n)] for i, n in enumerate(target_lengths)])
    return Setup(log_probs, targets, input_lengths, target_lengths)


def to_padded(targets: torch.Tensor, lengths: torch.Tensor, width: int) -> torch.Tensor:
    """Concatenated targets -> (N, width), padded with 0 (a naive loop: the test oracle)."""
    out = torch.zeros((len(lengths), width), dtype=torch.int64)
    offset = 0
    for i, n in enumerate(lengths.tolist()):
        out[i, :n] = targets[offset:offset + n]
        offset += n
    return out


@pytest.fixture
def make_setup():
    """The ``valid_setup`` factory (pytest's importlib mode cannot import conftest as a module)."""
    return valid_setup


@pytest.fixture
def naive_padded():
    return to_padded
