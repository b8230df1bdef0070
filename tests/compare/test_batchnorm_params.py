"""BatchNorm settings and parameters against ONNX: no training-only momentum is read from an inference graph,
and a planted BatchNorm scale is blamed on the weights, with the channel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = [pytest.mark.keras, pytest.mark.onnx]


@pytest.fixture(scope="module")
def keras_port(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("tf_keras")
    tf2onnx = pytest.importorskip("tf2onnx")
    inputs = keras.Input((8, 8, 4), name="input")
    x = keras.layers.ReLU(name="relu")(keras.layers.BatchNormalization(name="pre_bn")(inputs))
    model = keras.Model(inputs, keras.layers.Conv2D(8, 3, name="conv")(x))
    rng = np.random.default_rng(0)
    model.get_layer("pre_bn").set_weights([rng.uniform(0.5, 1.5, 4).astype("f4"), rng.normal(0, 0.1, 4).astype("f4"),
                                           rng.normal(0, 0.2, 4).astype("f4"), rng.uniform(0.5, 1.5, 4).astype("f4")])
    path = tmp_path_factory.mktemp("bn") / "m.onnx"
    spec = (tf.TensorSpec((1, 8, 8, 4), tf.float32, name="input"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(path))
    return model, path


def test_no_momentum_finding_against_an_onnx_batchnorm(keras_port: tuple[object, Path]) -> None:
    from dldebug import compare_models

    model, path = keras_port
    result = compare_models(model, path)
    assert result and not [f.check for f in result.report.findings if "momentum" in f.message.lower()]


def test_a_planted_batchnorm_scale_is_blamed_on_the_weights(keras_port: tuple[object, Path], scale_row: Any) -> None:
    import onnx

    from dldebug import compare_models

    model, path = keras_port
    proto = onnx.load(str(path))
    bn = next(n for n in proto.graph.node if n.op_type == "BatchNormalization")
    scale_row(proto, bn.input[1], 2, 1.5)  # the scale (gamma)
    result = compare_models(model, proto)
    diverged = result.report.get("compare.diverged")
    assert not result and diverged is not None and diverged.evidence["layer_a"] == "pre_bn"
    assert diverged.evidence["likely_cause"] == "weights.differ" and "channel(s) [2]" in diverged.message
