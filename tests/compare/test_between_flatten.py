"""A planted row of the final Linear is reported at that Linear, not "between" it and the layer before: an unpaired
Flatten cannot change a value, and a pair whose own weights differ explains the divergence where it is."""

from __future__ import annotations

from pathlib import Path

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
def test_a_planted_fc_row_is_found_at_fc(tmp_path: Path, dynamo: bool, mode: str) -> None:
    import onnx
    from onnx import numpy_helper

    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(1, 3, 16, 16)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=dynamo)
    assert compare_models(model, path, x, mode=mode)
    proto = onnx.load(str(path))
    for index, tensor in enumerate(proto.graph.initializer):
        if tensor.name == "fc.weight":
            weight = numpy_helper.to_array(tensor).copy()
            weight[1] *= 1.5
            proto.graph.initializer[index].CopyFrom(numpy_helper.from_array(weight, tensor.name))
    result = compare_models(model, proto, x, mode=mode)
    diverged = result.report.get("compare.diverged")
    assert diverged is not None and result.between is None
    assert diverged.message.startswith("first divergence at fc (a) / ")
    assert diverged.evidence["likely_cause"] == "weights.differ"
