"""Keras interop: real tf_keras LocallyConnected1D/2D layers (implementations 1, 2, 3) in and out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dldebug.errors import ConfigError, InputError
from dldebug.nn import LocallyConnected1d, LocallyConnected2d

pytestmark = pytest.mark.keras
tf_keras = pytest.importorskip("tf_keras")

CASES_2D = [  # (input (H, W), channels in, filters, kernel, strides, padding)
    ((7, 6), 3, 4, (3, 2), (1, 1), "valid"),
    ((8, 9), 2, 3, (3, 3), (2, 3), "valid"),
    ((6, 7), 2, 3, (3, 5), (2, 1), "same"),
]


def keras_layer_2d(size, c_in, filters, kernel, strides, padding, implementation, data_format, seed=0):
    tf_keras.utils.set_random_seed(seed)
    layer = tf_keras.layers.LocallyConnected2D(
        filters, kernel, strides=strides, padding=padding, implementation=implementation,
        data_format=data_format, bias_initializer="random_normal")
    layer.build((None, *size, c_in) if data_format == "channels_last" else (None, c_in, *size))
    return layer


def run_keras(layer, x_channels_first: np.ndarray, data_format: str) -> np.ndarray:
    """Feed a channels-first array to the Keras layer and return its output channels-first."""
    n_spatial = x_channels_first.ndim - 2
    to_last = (0, *range(2, 2 + n_spatial), 1)
    to_first = (0, n_spatial + 1, *range(1, n_spatial + 1))
    if data_format == "channels_first":
        return layer(x_channels_first).numpy()
    return layer(x_channels_first.transpose(to_last)).numpy().transpose(to_first)


FORMATS = ("channels_last", "channels_first")
# Keras implementation 1 supports only padding="valid".
COMBOS_2D = [(case, impl, fmt) for case in CASES_2D for impl in (1, 2, 3) for fmt in FORMATS
             if not (case[-1] == "same" and impl == 1)]
COMBOS_1D = [(pad, impl, fmt) for pad in ("valid", "same") for impl in (1, 2, 3) for fmt in FORMATS
             if not (pad == "same" and impl == 1)]


@pytest.mark.parametrize("case, implementation, data_format", COMBOS_2D)
def test_from_keras_2d_matches_keras_output(case, implementation, data_format):
    size, c_in, filters, kernel, strides, padding = case
    keras_layer = keras_layer_2d(size, c_in, filters, kernel, strides, padding, implementation, data_format)
    x = np.random.default_rng(0).standard_normal((2, c_in, *size)).astype(np.float32)
    layer = LocallyConnected2d.from_keras(keras_layer)
    ours = layer(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours, run_keras(keras_layer, x, data_format), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case, implementation, data_format", COMBOS_2D)
def test_to_keras_2d_round_trips(case, implementation, data_format):
    size, c_in, filters, kernel, strides, padding = case
    torch.manual_seed(0)
    pad = tuple(k // 2 for k in kernel) if padding == "same" else 0
    layer = LocallyConnected2d(c_in, filters, size, kernel, stride=strides, padding=pad)
    keras_layer = layer.to_keras(implementation=implementation, data_format=data_format)
    x = np.random.default_rng(1).standard_normal((3, c_in, *size)).astype(np.float32)
    expected = layer(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(run_keras(keras_layer, x, data_format), expected, rtol=1e-5, atol=1e-5)
    back = LocallyConnected2d.from_keras(keras_layer)
    # Taps that fall on zero padding are not stored by Keras 2/3; they come back as zeros.
    (seen,) = torch.autograd.grad(layer(torch.ones(1, c_in, *size)).sum(), layer.weight)
    torch.testing.assert_close(back.weight, layer.weight.detach() * (seen != 0), rtol=0, atol=0)
    torch.testing.assert_close(back.bias, layer.bias.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("padding, implementation, data_format", COMBOS_1D)
def test_1d_from_keras_and_back(padding, implementation, data_format):
    tf_keras.utils.set_random_seed(0)
    keras_layer = tf_keras.layers.LocallyConnected1D(
        3, 3, strides=2, padding=padding, implementation=implementation, data_format=data_format,
        bias_initializer="random_normal")
    keras_layer.build((None, 11, 2) if data_format == "channels_last" else (None, 2, 11))
    x = np.random.default_rng(2).standard_normal((2, 2, 11)).astype(np.float32)
    layer = LocallyConnected1d.from_keras(keras_layer)
    assert layer.padding[1] == (1 if padding == "same" else 0)
    ours = layer(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours, run_keras(keras_layer, x, data_format), rtol=1e-5, atol=1e-5)
    again = layer.to_keras(implementation=implementation, data_format=data_format)
    np.testing.assert_allclose(run_keras(again, x, data_format), ours, rtol=1e-5, atol=1e-5)


def test_keras_interop_errors():
    with pytest.raises(ConfigError, match="Keras LocallyConnected layers have no dilation"):
        LocallyConnected2d(2, 2, 8, 3, dilation=2).to_keras()
    with pytest.raises(ConfigError, match="implementation=1 supports only padding='valid'"):
        LocallyConnected2d(2, 2, 8, 3, padding=1).to_keras(implementation=1)
    with pytest.raises(ConfigError, match=r"padding 'valid' \(0\) or 'same'"):
        LocallyConnected2d(2, 2, 8, 3, padding=2).to_keras(implementation=2)
    with pytest.raises(ConfigError, match="implementation must be 1, 2 or 3; got 4"):
        LocallyConnected2d(2, 2, 8, 3).to_keras(implementation=4)  # type: ignore[arg-type]
    relu = tf_keras.layers.LocallyConnected2D(2, 3, activation="relu")
    relu.build((None, 8, 8, 2))
    with pytest.raises(ConfigError, match="applies activation 'relu'"):
        LocallyConnected2d.from_keras(relu)
    with pytest.raises(InputError, match="is not built"):
        LocallyConnected2d.from_keras(tf_keras.layers.LocallyConnected2D(2, 3))
    one_d = tf_keras.layers.LocallyConnected1D(2, 3)
    one_d.build((None, 8, 2))
    with pytest.raises(InputError, match="expects a tf_keras.layers.LocallyConnected2D; got LocallyConnected1D"):
        LocallyConnected2d.from_keras(one_d)
