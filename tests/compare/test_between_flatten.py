"""A planted row of the final Linear is reported at that Linear, not "between" it and the layer before: an unpaired
Flatten cannot change a value, and a pair whose own weights differ explains the divergence where it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from dldebug import compare_models

pytestmark = pytest.mark.onnx


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.pool, self.fc = nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))  # functional flatten: no module


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("mode", ["propagate", "shadow"])
def test_a_planted_fc_row_is_found_at_fc(tmp_path: Path, dynamo: bool, mode: str, scale_row: Any) -> None:
    import onnx

    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(1, 3, 16, 16)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=dynamo)
    assert compare_models(model, path, x, mode=mode)
    proto = onnx.load(str(path))
    scale_row(proto, "fc.weight", 1, 1.5)
    result = compare_models(model, proto, x, mode=mode)
    diverged = result.report.get("compare.diverged")
    assert diverged is not None and result.between is None
    assert diverged.message.startswith("first divergence at fc (a) / ")
    assert diverged.evidence["likely_cause"] == "weights.differ"
