"""Keras CNN (tf_keras defaults) vs hand-ports to PyTorch: eps, flatten order and LeakyReLU bugs; Keras 3 too."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from dldebug import compare_models
from dldebug.demo.keras_port import INPUT_SHAPE, build_keras_cnn, port_to_torch

pytestmark = pytest.mark.keras


def test_correct_port_matches_every_layer(keras_cnn: Any) -> None:
    result = compare_models(keras_cnn, port_to_torch(keras_cnn))
    assert result, result.layers.records()
    assert result.settings["framework_a"] == "tf_keras" and result.settings["input_shape"] == [1, 12, 12, 3]
    assert [r.layer_b for r in result.rows] == ["conv1", "bn1", "act1", "pool1", "conv2+relu2", "pool2", "flatten",
                                                "fc1+relu3", "fc2", "<output>"]
    assert {r.weights for r in result.rows if r.kind == "conv"} == {"same"}
    fc1 = next(r for r in result.rows if r.layer_a == "fc1")
    assert fc1.weights == "same up to NHWC-flatten permutation"
    assert not result.report.has("compare.diverged")


def test_default_batchnorm_eps_is_the_first_divergence(keras_cnn: Any) -> None:
    result = compare_models(keras_cnn, port_to_torch(keras_cnn, bn_eps=1e-5))
    first = result.first_divergence
    assert first is not None and (first.layer_a, first.layer_b) == ("bn1", "bn1")
    cause = first.explanations[0]
    assert cause["rule"] == "batchnorm.eps"
    assert cause["evidence"]["eps_a"] == pytest.approx(1e-3) and cause["evidence"]["eps_b"] == pytest.approx(1e-5)
    assert "eps=0.001" in cause["message"] and "eps=1e-05" in cause["message"]
    finding = result.report.get("compare.diverged")
    assert finding is not None and finding.evidence["likely_cause"] == "batchnorm.eps"
    assert "eps=0.001" in (finding.fix or "")
    fixed = compare_models(keras_cnn, port_to_torch(keras_cnn, bn_eps=1e-3))
    assert fixed


def test_flatten_order_bug_is_found_at_the_first_dense(keras_cnn: Any) -> None:
    result = compare_models(keras_cnn, port_to_torch(keras_cnn, permute_flatten=False))
    first = result.first_divergence
    assert first is not None and first.layer_a == "fc1"
    assert next(r for r in result.rows if r.layer_a == "flatten").within
    assert first.explanations[0]["rule"] == "flatten.order"
    assert first.explanations[0]["evidence"]["layout_a"] == "channels_last"


def test_leaky_relu_slope_bug(keras_cnn: Any) -> None:
    result = compare_models(keras_cnn, port_to_torch(keras_cnn, leaky_slope=0.01))
    first = result.first_divergence
    assert first is not None and first.layer_a == "act1"
    evidence = first.explanations[0]["evidence"]
    assert first.explanations[0]["rule"] == "leaky_relu.slope"
    assert (evidence["slope_a"], evidence["slope_b"]) == pytest.approx((0.3, 0.01))


def test_shadow_mode_with_keras_as_b_calls_each_layer(keras_cnn: Any) -> None:
    port = port_to_torch(keras_cnn, bn_eps=1e-5, leaky_slope=0.01)
    shadow = compare_models(port, keras_cnn, (1, 3, 12, 12), input_kind="random", mode="shadow")
    assert [r.layer_b for r in shadow.divergences] == ["bn1", "act1"]
    propagate = compare_models(port, keras_cnn, (1, 3, 12, 12), input_kind="random")
    assert len(propagate.divergences) > 2


def test_keras3_model_is_captured(keras3: Any) -> None:
    model = build_keras_cnn(keras3, seed=1)
    result = compare_models(model, port_to_torch(model))
    assert result.settings["framework_a"] == "keras" and result
    assert not compare_models(model, port_to_torch(model, bn_eps=1e-5))


def test_same_padding_with_stride_two_is_explained(tf_keras: Any) -> None:
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input((8, 8, 2)), tf_keras.layers.Conv2D(4, 3, strides=2, padding="same")])
    kernel, bias = model.layers[0].get_weights()
    port = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1)).eval()
    port[0].weight.data = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
    port[0].bias.data = torch.from_numpy(bias)
    result = compare_models(model, port, input_kind="random")
    first = result.first_divergence
    assert first is not None and first.explanations[0]["rule"] == "conv.same_padding"
    assert first.explanations[0]["evidence"]["stride"] == [2, 2]


def test_conv_kernel_reshaped_instead_of_transposed(tf_keras: Any) -> None:
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input((6, 6, 2)), tf_keras.layers.Conv2D(4, 3, padding="valid")])
    kernel, bias = model.layers[0].get_weights()
    port = nn.Sequential(nn.Conv2d(2, 4, 3)).eval()
    port[0].weight.data = torch.from_numpy(kernel.reshape(4, 2, 3, 3).copy())
    port[0].bias.data = torch.from_numpy(bias)
    first = compare_models(model, port).first_divergence
    assert first is not None and first.explanations[0]["rule"] == "weights.layout"
    assert "reshaped (not transposed)" in first.explanations[0]["message"]


def test_lstm_second_bias_is_explained(tf_keras: Any) -> None:
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input((5, 3)), tf_keras.layers.LSTM(4, return_sequences=True)])
    kernel, recurrent, bias = model.layers[0].get_weights()
    port = nn.LSTM(3, 4, batch_first=True)
    port.weight_ih_l0.data = torch.from_numpy(kernel.T.copy())
    port.weight_hh_l0.data = torch.from_numpy(recurrent.T.copy())
    port.bias_ih_l0.data = torch.from_numpy(bias.copy())
    port.bias_hh_l0.data = torch.from_numpy(bias.copy())  # the bug: the bias counted twice
    x = np.random.default_rng(0).standard_normal((1, 5, 3)).astype(np.float32)
    wrapped = nn.Sequential(port).eval()
    first = compare_models(model, wrapped, x).first_divergence
    assert first is not None and first.explanations[0]["rule"] == "lstm.gates"
    port.bias_hh_l0.data.zero_()
    assert compare_models(model, wrapped, x)


def test_input_shape_constant_matches_builder() -> None:
    assert INPUT_SHAPE == (12, 12, 3)


def test_demo_scenario_reports_eps_and_the_fix(tf_keras: Any, tmp_path: Any) -> None:
    from dldebug.demo.context import DemoContext
    from dldebug.demo.keras_port import scenario

    report = scenario(DemoContext(out_dir=tmp_path))
    assert report.meta["first_divergence"] == "bn1"
    assert report.get("compare.diverged") is not None
    fixed = report.get("compare.fixed")
    assert fixed is not None and fixed.evidence["diverged_layers"] == 0
    assert report.figure("compare.layer_error").logy


def test_functional_model_with_residual_and_global_pooling(tf_keras: Any) -> None:
    tf_keras.utils.set_random_seed(0)
    inputs = tf_keras.Input((8, 8, 3))
    x = tf_keras.layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    y = tf_keras.layers.Conv2D(4, 3, padding="same", name="c2")(x)
    z = tf_keras.layers.GlobalAveragePooling2D(name="gap")(tf_keras.layers.Add(name="add")([x, y]))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(3, name="fc")(z))

    class Port(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
            self.gap, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(4, 3)

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            t = self.c1(t)
            return self.fc(self.gap(t + self.c2(t)).flatten(1))

    port = Port().eval()
    for name in ("c1", "c2"):
        kernel, bias = model.get_layer(name).get_weights()
        getattr(port, name).weight.data = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
        getattr(port, name).bias.data = torch.from_numpy(bias)
    kernel, bias = model.get_layer("fc").get_weights()
    port.fc.weight.data, port.fc.bias.data = torch.from_numpy(kernel.T.copy()), torch.from_numpy(bias)
    result = compare_models(model, port, input_kind="random")
    assert result and [r.layer_a for r in result.rows] == ["c1", "c2", "gap", "fc", "<output>"]
    assert compare_models(port, model, (1, 3, 8, 8), mode="shadow")
    port.c2.bias.data += 0.1
    shadow = compare_models(port, model, (1, 3, 8, 8), mode="shadow")
    assert [r.layer_a for r in shadow.divergences] == ["c2"]


def test_corrupt_keras_file_is_a_file_format_error(keras3: Any, tmp_path: Any) -> None:
    from dldebug.compare import load_compare_model
    from dldebug.errors import FileFormatError

    path = tmp_path / "broken.keras"
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(FileFormatError, match="cannot read the Keras model"):
        load_compare_model(path)
    with pytest.raises(FileFormatError, match="Keras model file not found"):
        load_compare_model(tmp_path / "missing.h5")


@pytest.mark.parametrize("reorder", [True, False])
def test_gru_gate_order(tf_keras: Any, reorder: bool) -> None:
    tf_keras.utils.set_random_seed(0)
    hidden = 4
    model = tf_keras.Sequential([tf_keras.Input((5, 3)), tf_keras.layers.GRU(hidden, return_sequences=True)])
    kernel, recurrent, bias = model.layers[0].get_weights()  # gates z, r, h; bias rows: input, recurrent

    def torch_order(w: np.ndarray) -> np.ndarray:  # Keras (z, r, h) -> PyTorch (r, z, n) along the gate axis
        z, r, h = np.split(w, 3, axis=-1)
        return np.concatenate([r, z, h], axis=-1) if reorder else w

    port = nn.GRU(3, hidden, batch_first=True)
    port.weight_ih_l0.data = torch.from_numpy(torch_order(kernel).T.copy())
    port.weight_hh_l0.data = torch.from_numpy(torch_order(recurrent).T.copy())
    port.bias_ih_l0.data = torch.from_numpy(torch_order(bias[0]).copy())
    port.bias_hh_l0.data = torch.from_numpy(torch_order(bias[1]).copy())
    x = np.random.default_rng(0).standard_normal((1, 5, 3)).astype(np.float32)
    result = compare_models(model, nn.Sequential(port).eval(), x)
    if reorder:
        assert result, result.layers.records()
    else:
        first = result.first_divergence
        assert first is not None and first.explanations[0]["rule"] == "gru.gates"
        assert first.explanations[0]["evidence"]["gate_order_a"] == "zrh"


@pytest.mark.parametrize(("activation", "slope"), [("layer", 0.3), ("function", 0.2)])
def test_leaky_relu_defaults_are_read_from_the_layer_or_function(keras3: Any, activation: str, slope: float) -> None:
    act = keras3.layers.LeakyReLU() if activation == "layer" else keras3.layers.Activation("leaky_relu")
    model = keras3.Sequential([keras3.Input((4,)), act])
    x = np.array([[-1.0, -2.0, 0.5, 3.0]], np.float32)
    result = compare_models(model, nn.Sequential(nn.LeakyReLU()).eval(), x)
    first = result.first_divergence
    assert first is not None and first.explanations[0]["evidence"]["slope_a"] == pytest.approx(slope)
    assert compare_models(model, nn.Sequential(nn.LeakyReLU(slope)).eval(), x)


@pytest.mark.parametrize("style", ["dict", "tuple"])
def test_keras_model_with_two_named_inputs(keras3: Any, style: str) -> None:
    ids, extra = keras3.Input((5,), name="ids", dtype="int32"), keras3.Input((4,), name="extra")
    embedded = keras3.layers.Flatten(name="flat")(keras3.layers.Embedding(10, 2, name="embed")(ids))
    joined = keras3.layers.Concatenate(name="cat")([embedded, extra])
    model = keras3.Model([ids, extra], keras3.layers.Dense(3, name="fc")(joined))
    values = (np.array([[1, 2, 3, 4, 5]], np.int32), np.ones((1, 4), np.float32))
    inputs = dict(zip(("ids", "extra"), values, strict=True)) if style == "dict" else values
    result = compare_models(model, model, inputs, mode="shadow")
    assert result and result.settings["inputs"][("ids" if style == "dict" else "0")]["dtype"] == "int32"
    assert {"embed", "fc"} <= {r.layer_a for r in result.rows}
