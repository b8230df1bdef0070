"""The fuzzer's oracles must fail on a wrong result and pass a right one, rounding included."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from fuzz_api import _check_locally_connected

_ARGS = {"in_channels": 2, "out_channels": 2, "input_size": (5, 7), "kernel_size": 5, "stride": 1, "padding": 2,
         "dilation": 1, "bias": True, "padding_mode": "circular"}


def test_locally_connected_oracle_allows_float32_rounding_where_huge_terms_cancel() -> None:
    # the full run's seed 1 found this: inputs of -8e15 whose products cancel to a small output; float32 keeps
    # ~1e-7 of the terms' size, so the output differs from the float64 loop by 1e7 -- correct float32 arithmetic
    torch.manual_seed(3)
    x = torch.full((1, 2, 5, 7), -8.1312e15)
    x[0, 0, 0, 0] = 3.0
    _check_locally_connected({"args": _ARGS, "x": x}, None)  # type: ignore[arg-type]


def test_locally_connected_oracle_catches_a_wrong_output(monkeypatch: Any) -> None:
    from dldebug.nn import LocallyConnected2d

    forward = LocallyConnected2d.forward
    monkeypatch.setattr(LocallyConnected2d, "forward", lambda self, x: forward(self, x) * (1 + 1e-3))
    with pytest.raises(AssertionError, match="!= naive"):
        _check_locally_connected({"args": _ARGS, "x": torch.randn(1, 2, 5, 7)}, None)  # type: ignore[arg-type]
