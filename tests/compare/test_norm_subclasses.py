"""A subclass of a torch norm (ConvNeXt's ``ConvNextLayerNorm(nn.LayerNorm)``) is paired as that norm: it was
counted as plumbing, so the coverage figure hid it and shadow mode blamed only ``<output>`` for its planted bug."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from dldebug import compare_models
from dldebug.compare.runners.torch import kind_of

pytestmark = pytest.mark.onnx


class OwnLayerNorm(nn.LayerNorm):
    pass


class OwnLinear(nn.Linear):  # may compute anything with its weight (a LoRA layer): not assumed to be a Linear
    pass


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.norm, self.fc2 = nn.Linear(16, 32), OwnLayerNorm(32), nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.norm(self.fc1(x)))


def test_norm_subclasses_take_their_base_kind_and_other_subclasses_do_not() -> None:
    assert kind_of(OwnLayerNorm(4)) == "layernorm"
    assert kind_of(type("OwnBatchNorm", (nn.BatchNorm2d,), {})(4)) == "batchnorm"
    assert kind_of(OwnLinear(2, 2)) == "other"


@pytest.mark.parametrize("mode", ["propagate", "shadow"])
def test_a_planted_bug_in_a_norm_subclass_is_found_there(tmp_path: Path, mode: str, scale_row: Any) -> None:
    import onnx

    torch.manual_seed(0)
    model = Net().eval()
    with torch.no_grad():
        model.norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 16)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=True)
    healthy = compare_models(model, path, x, mode=mode)
    assert healthy and healthy.settings["coverage"]["weighted_layers_a"] == 3
    proto = onnx.load(str(path))
    scale_row(proto, "norm.weight", 3, 1.5)
    planted = compare_models(model, proto, x, mode=mode)
    first = planted.first_divergence
    assert not planted and first is not None and (first.layer_a, first.layer_b) == ("norm", "norm")
    assert planted.report.get("compare.diverged").evidence["likely_cause"] == "weights.differ"
