"""A BatchNorm is folded with the conv whose output it reads, not with the conv listed before it.

Two parallel conv -> BN branches may run (and be listed) conv, conv, BN, BN: tf_keras' ResNet50 does in every
``conv*_block1`` (``0_conv, 3_conv, 0_bn, 3_bn``). Pairing by position folded the main conv with the shortcut's
BatchNorm and called a correct conversion divergent (8 config_mismatch warnings on ResNet50).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dldebug import compare_models

pytestmark = pytest.mark.onnx


class TwoBranches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c_short, self.c_main = nn.Conv2d(8, 16, 1), nn.Conv2d(8, 16, 1)
        self.bn_short, self.bn_main = nn.BatchNorm2d(16), nn.BatchNorm2d(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short, main = self.c_short(x), self.c_main(x)  # both convs first, then both BatchNorms
        return torch.relu(self.bn_short(short) + self.bn_main(main))


def _randomised(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.copy_(torch.randn(16, generator=g) * 0.2)
            bn.running_var.copy_(torch.rand(16, generator=g) * 0.5 + 0.5)
            bn.weight.copy_(torch.rand(16, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(16, generator=g) * 0.1)
    return model.eval()


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_interleaved_branches_fold_each_batchnorm_into_its_own_conv(tmp_path: Path, dynamo: bool) -> None:
    torch.manual_seed(0)
    model = _randomised(TwoBranches())
    x = torch.randn(1, 8, 16, 16)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=dynamo)
    result = compare_models(model, path, x)
    assert result, [(f.check, f.message) for f in result.report.findings]
    folded = {row["layer a"]: row["weights"] for row in result.layers.records() if "+" in row["layer a"]}
    assert folded == {"c_short+bn_short": "folded", "c_main+bn_main": "folded"}
    assert not [f for f in result.report.findings if f.severity.value != "info"]


@pytest.mark.keras
def test_interleaved_keras_branches_against_tf2onnx(tmp_path: Path) -> None:
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("tf_keras")
    tf2onnx = pytest.importorskip("tf2onnx")
    inputs = keras.Input((16, 16, 8), name="input")
    short = keras.layers.BatchNormalization(name="short_bn")  # created in the order Keras lists them below
    main = keras.layers.BatchNormalization(name="main_bn")
    a, b = keras.layers.Conv2D(16, 1, name="short_conv")(inputs), keras.layers.Conv2D(16, 1, name="main_conv")(inputs)
    out = keras.layers.ReLU(name="out")(keras.layers.Add(name="add")([short(a), main(b)]))
    model = keras.Model(inputs, out)
    assert [layer.name for layer in model.layers][1:5] == ["short_conv", "main_conv", "short_bn", "main_bn"]
    rng = np.random.default_rng(0)
    for bn in (short, main):
        bn.set_weights([rng.uniform(0.5, 1.5, 16).astype("f4"), rng.normal(0, 0.1, 16).astype("f4"),
                        rng.normal(0, 0.2, 16).astype("f4"), rng.uniform(0.5, 1.5, 16).astype("f4")])
    path = tmp_path / "m.onnx"
    spec = (tf.TensorSpec((1, 16, 16, 8), tf.float32, name="input"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(path))
    x = rng.normal(size=(1, 16, 16, 8)).astype("f4")
    result = compare_models(model, path, x)
    assert result, [(f.check, f.message) for f in result.report.findings]
    folded = {row["layer a"]: row["weights"] for row in result.layers.records() if "+" in row["layer a"]}
    assert folded == {"short_conv+short_bn": "folded", "main_conv+main_bn": "folded"}
