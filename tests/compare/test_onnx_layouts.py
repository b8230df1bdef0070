"""Two ONNX exports of one Keras model, NHWC (tf2onnx's default) and ``inputs_as_nchw``: tf2onnx runs the
per-channel preprocessing in NHWC in one and NCHW in the other while every tensor carries its model's one layout
label; a shape that only fits with the channels moved is compared that way (it was a false "shape mismatch")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dldebug.compare.layout import best_view

pytestmark = [pytest.mark.keras, pytest.mark.onnx]


def test_best_view_moves_channels_when_only_that_fits_even_between_equal_labels() -> None:
    nchw = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    nhwc = np.moveaxis(nchw, 1, -1)
    found = best_view(nchw, "channels_first", "channels_first", nhwc)
    assert found is not None and np.array_equal(found[1], nhwc)
    same = best_view(nchw, "channels_first", "channels_first", nchw)  # identity first where it fits
    assert same is not None and same[0] == "identity"


def test_nhwc_and_nchw_exports_of_one_model_agree(tmp_path: Path) -> None:
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("tf_keras")
    tf2onnx = pytest.importorskip("tf2onnx")
    from dldebug import compare_models

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3), name="input")
    x = keras.layers.Rescaling(1 / 255, name="rescaling")(inputs)
    x = keras.layers.Normalization(mean=[0.4, 0.5, 0.6], variance=[0.1, 0.2, 0.3], name="normalization")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(x))
    spec = (tf.TensorSpec((1, 16, 16, 3), tf.float32, name="input"),)
    nhwc, nchw = tmp_path / "nhwc.onnx", tmp_path / "nchw.onnx"
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(nhwc))
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(nchw), inputs_as_nchw=["input"])
    result = compare_models(nhwc, nchw)
    assert result, [(f.check, f.message) for f in result.report.findings]
    assert "shape mismatch" not in result.layers.column("status")
