"""Weights of ``tf_keras`` LocallyConnected1D/2D layers in and out of dldebug's layers.

Keras 2 stored the kernel in three ways, chosen by ``implementation``:

1. one kernel per output location, ``(L_out, kH*kW*C_in, C_out)`` (patch order ``kH, kW, C`` for
   channels-last inputs, ``C, kH, kW`` for channels-first);
2. a dense kernel over every (input, output) pair, multiplied by a fixed mask:
   ``(H, W, C_in, H_out, W_out, C_out)`` channels-last, ``(C_in, H, W, C_out, H_out, W_out)`` channels-first;
3. the non-zero entries of that matrix as a vector, in the sorted order of ``kernel_idxs``
   (pairs of flat output and input indices).

Every format is mapped through index grids to dldebug's ``(H_out, W_out, C_out, C_in, kH, kW)`` weight, one
Conv2d weight per location. The bias is ``(H_out, W_out, C_out)`` in Keras and ``(C_out, H_out, W_out)`` here.
A 1-D layer is handled as a 2-D layer with one row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dldebug.errors import ConfigError, InputError, require

__all__ = ["from_keras", "to_keras"]

_FEATURE = "LocallyConnected Keras interop"


@dataclass(frozen=True)
class _Geometry:
    """Sizes of one layer, 2-D (a 1-D layer has one row)."""

    rows: int
    cols: int
    c_in: int
    out_rows: int
    out_cols: int
    c_out: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    channels_last: bool

    def grids(self) -> tuple[np.ndarray, ...]:
        """Broadcastable index grids over our weight's (H_out, W_out, C_out, C_in, kH, kW) axes."""
        oh, ow, f, c, i, j = np.ix_(*(np.arange(n) for n in (self.out_rows, self.out_cols, self.c_out, self.c_in,
                                                              *self.kernel)))
        row = oh * self.stride[0] - self.pad[0] + i
        col = ow * self.stride[1] - self.pad[1] + j
        valid = (row >= 0) & (row < self.rows) & (col >= 0) & (col < self.cols)
        return oh, ow, f, c, np.clip(row, 0, self.rows - 1), np.clip(col, 0, self.cols - 1), valid

    def flat_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Keras implementation 3's sort key (out_idx * n_in + in_idx) per weight entry, and the valid mask."""
        oh, ow, f, c, row, col, valid = self.grids()
        if self.channels_last:
            out_idx = (oh * self.out_cols + ow) * self.c_out + f
            in_idx = (row * self.cols + col) * self.c_in + c
        else:
            out_idx = (f * self.out_rows + oh) * self.out_cols + ow
            in_idx = (c * self.rows + row) * self.cols + col
        n_in = self.rows * self.cols * self.c_in
        keys = np.broadcast_to(out_idx.astype(np.int64) * n_in + in_idx, self.weight_shape)
        return keys, np.broadcast_to(valid, self.weight_shape)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_rows, self.out_cols, self.c_out, self.c_in, *self.kernel)


def _keras_layers() -> tuple[Any, Any]:
    keras = require("tf_keras", extra="keras", feature=_FEATURE)
    return keras.layers.LocallyConnected1D, keras.layers.LocallyConnected2D


def _geometry_of_keras(layer: Any, input_size: Sequence[int] | None) -> tuple[_Geometry, int, bool]:
    config = layer.get_config()
    one_d = len(config["kernel_size"]) == 1
    channels_last = config["data_format"] == "channels_last"
    shape = getattr(layer, "_build_input_shape", None)
    if shape is None or not getattr(layer, "built", False):
        raise InputError(f"The Keras layer {layer.name!r} is not built; call it once or layer.build(input_shape).")
    shape = tuple(shape)
    spatial = shape[1:-1] if channels_last else shape[2:]
    c_in = int(shape[-1] if channels_last else shape[1])
    if input_size is not None and tuple(input_size) != tuple(spatial):
        raise InputError(f"input_size {tuple(input_size)} does not match the Keras layer's input {tuple(spatial)}.")
    if config["activation"] != "linear":
        raise ConfigError(
            f"The Keras layer {layer.name!r} applies activation {config['activation']!r}, which a "
            "LocallyConnected layer does not hold. Build the Keras layer with activation=None and apply the "
            "activation separately (e.g. torch.nn.ReLU)."
        )
    kernel, stride = tuple(config["kernel_size"]), tuple(config["strides"])
    if config["padding"] == "same" and any(k % 2 == 0 for k in kernel):
        raise ConfigError(f"padding='same' with an even kernel {kernel} pads asymmetrically; only odd kernels "
                          "can be expressed as symmetric padding.")
    pad = tuple(k // 2 for k in kernel) if config["padding"] == "same" else (0,) * len(kernel)
    out = tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(spatial, kernel, stride, pad, strict=True))
    lift = (lambda t, fill: (fill, *t)) if one_d else (lambda t, fill: tuple(t))
    rows, cols = (int(v) for v in lift(spatial, 1))
    out_rows, out_cols = lift(out, 1)
    geometry = _Geometry(rows, cols, c_in, out_rows, out_cols, int(config["filters"]), lift(kernel, 1),
                         lift(stride, 1), lift(pad, 0), channels_last)
    return geometry, int(config["implementation"]), one_d


def _weight_from_keras(kernel: np.ndarray, geometry: _Geometry, implementation: int,
                       kernel_idxs: Any = None) -> np.ndarray:
    g = geometry
    kh, kw = g.kernel
    if implementation == 1:
        k = kernel.reshape(g.out_rows, g.out_cols, kh, kw, g.c_in, g.c_out) if g.channels_last else \
            kernel.reshape(g.out_rows, g.out_cols, g.c_in, kh, kw, g.c_out)
        order = (0, 1, 5, 4, 2, 3) if g.channels_last else (0, 1, 5, 2, 3, 4)
        return np.ascontiguousarray(k.transpose(order))
    oh, ow, f, c, row, col, valid = g.grids()
    if implementation == 2:
        if g.channels_last:
            dense = kernel.reshape(g.rows, g.cols, g.c_in, g.out_rows, g.out_cols, g.c_out)
            weight = dense[row, col, c, oh, ow, f]
        else:
            dense = kernel.reshape(g.c_in, g.rows, g.cols, g.c_out, g.out_rows, g.out_cols)
            weight = dense[c, row, col, f, oh, ow]
        return np.where(valid, weight, 0).astype(kernel.dtype)
    keys, valid_b = g.flat_keys()
    n_in = g.rows * g.cols * g.c_in
    keras_keys = np.array([o * n_in + i for o, i in kernel_idxs], dtype=np.int64)
    position = np.clip(np.searchsorted(keras_keys, keys), 0, len(keras_keys) - 1)
    found = keras_keys[position] == keys
    if not np.array_equal(found & valid_b, valid_b):
        raise InputError("The Keras layer's kernel_idxs do not match its geometry; the layer file may be corrupt.")
    return np.where(valid_b, kernel[position], 0).astype(kernel.dtype)


def _bias_from_keras(bias: np.ndarray, g: _Geometry) -> np.ndarray:
    """Keras's ``(H_out, W_out, C_out)`` bias as ``(C_out, H_out, W_out)``.

    Keras's ``bias_add`` *reshapes* (does not transpose) the bias to ``(C_out, H_out, W_out)`` for channels-first
    data, so there the stored array is read in that order; channels-last transposes.
    """
    if g.channels_last:
        return np.ascontiguousarray(bias.reshape(g.out_rows, g.out_cols, g.c_out).transpose(2, 0, 1))
    return bias.reshape(g.c_out, g.out_rows, g.out_cols)


def from_keras(cls: type, layer: Any, input_size: int | Sequence[int] | None = None) -> Any:
    """Build ``cls`` (LocallyConnected1d/2d) from a built tf_keras LocallyConnected layer; see the class method."""
    lc1d, lc2d = _keras_layers()
    expected = lc1d if getattr(cls, "_ndim", 2) == 1 else lc2d
    if not isinstance(layer, expected):
        raise InputError(f"{cls.__name__}.from_keras expects a tf_keras.layers.{expected.__name__}; "
                         f"got {type(layer).__name__}.")
    size = None if input_size is None else ((input_size,) if isinstance(input_size, int) else tuple(input_size))
    g, implementation, one_d = _geometry_of_keras(layer, size)
    kernel = layer.kernel.numpy()
    idxs = layer.kernel_idxs if implementation == 3 else None
    weight = _weight_from_keras(kernel, g, implementation, idxs)
    spatial = (lambda pair: pair[1]) if one_d else (lambda pair: pair)
    module = cls(g.c_in, g.c_out, spatial((g.rows, g.cols)), spatial(g.kernel), stride=spatial(g.stride),
                 padding=spatial(g.pad), bias=layer.use_bias)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(weight).reshape(module.weight.shape))
        if module.bias is not None:
            module.bias.copy_(torch.from_numpy(_bias_from_keras(layer.bias.numpy(), g)).reshape(module.bias.shape))
    return module


def _keras_kernel(weight: np.ndarray, g: _Geometry, implementation: int, kernel_idxs: Any) -> np.ndarray:
    if implementation == 1:
        order = (0, 1, 4, 5, 3, 2) if g.channels_last else (0, 1, 3, 4, 5, 2)
        return np.ascontiguousarray(weight.transpose(order)).reshape(g.out_rows * g.out_cols, -1, g.c_out)
    oh, ow, f, c, row, col, valid = g.grids()
    if implementation == 2:
        index = tuple(np.broadcast_to(a, g.weight_shape)[np.broadcast_to(valid, g.weight_shape)]
                      for a in (row, col, c, oh, ow, f))
        dense = np.zeros((g.rows, g.cols, g.c_in, g.out_rows, g.out_cols, g.c_out), dtype=weight.dtype)
        dense[index] = weight[np.broadcast_to(valid, g.weight_shape)]
        return dense if g.channels_last else np.ascontiguousarray(dense.transpose(2, 0, 1, 5, 3, 4))
    keys, valid_b = g.flat_keys()
    by_key = np.argsort(keys[valid_b], kind="stable")
    n_in = g.rows * g.cols * g.c_in
    keras_keys = np.array([o * n_in + i for o, i in kernel_idxs], dtype=np.int64)
    if not np.array_equal(keys[valid_b][by_key], keras_keys):
        raise ConfigError("The Keras layer's sparse index set differs from this layer's connectivity.")
    return weight[valid_b][by_key]


def to_keras(module: Any, implementation: int = 1, data_format: str = "channels_last") -> Any:
    """Build a tf_keras LocallyConnected layer holding ``module``'s weights; see the method's docstring."""
    lc1d, lc2d = _keras_layers()
    if implementation not in (1, 2, 3):
        raise ConfigError(f"implementation must be 1, 2 or 3; got {implementation!r}.")
    if data_format not in ("channels_last", "channels_first"):
        raise ConfigError(f"data_format must be 'channels_last' or 'channels_first'; got {data_format!r}.")
    if module.dilation != (1, 1) or module.padding_mode != "zeros":
        raise ConfigError("Keras LocallyConnected layers have no dilation and pad with zeros only; got "
                          f"dilation={module.dilation}, padding_mode={module.padding_mode!r}.")
    kernel, stride, padding = module.kernel_size, module.stride, module.padding
    same = tuple(k // 2 if k % 2 else -1 for k in kernel)
    if any(padding) and (padding[1:] if module._ndim == 1 else padding) != (same[1:] if module._ndim == 1 else same):
        raise ConfigError(f"Keras supports padding 'valid' (0) or 'same' (kernel//2 with an odd kernel); "
                          f"got padding={padding} for kernel_size={kernel}.")
    if any(padding) and implementation == 1:
        raise ConfigError("Keras implementation=1 supports only padding='valid'; use implementation 2 or 3.")
    one_d = module._ndim == 1
    pick = (lambda pair: pair[1:]) if one_d else (lambda pair: pair)
    layer = (lc1d if one_d else lc2d)(
        filters=module.out_channels, kernel_size=pick(kernel), strides=pick(stride),
        padding="same" if any(padding) else "valid", data_format=data_format, implementation=implementation,
        use_bias=module.bias is not None,
    )
    spatial = pick(module.input_size)
    shape = (None, *spatial, module.in_channels) if data_format == "channels_last" else \
        (None, module.in_channels, *spatial)
    layer.build(shape)
    (rows, cols), (out_rows, out_cols) = module.input_size, module.output_size
    g = _Geometry(rows, cols, module.in_channels, out_rows, out_cols, module.out_channels, kernel, stride, padding,
                  data_format == "channels_last")
    weight = module.weight.detach().to(torch.float32).cpu().numpy().reshape(g.weight_shape)
    kernel_value = _keras_kernel(weight, g, implementation, getattr(layer, "kernel_idxs", None))
    weights = [kernel_value.reshape(tuple(layer.kernel.shape))]
    if module.bias is not None:
        bias = module.bias.detach().to(torch.float32).cpu().numpy().reshape(g.c_out, g.out_rows, g.out_cols)
        keras_bias = bias.transpose(1, 2, 0) if g.channels_last else bias  # see _bias_from_keras
        weights.append(np.ascontiguousarray(keras_bias).reshape(tuple(layer.bias.shape)))
    layer.set_weights(weights)
    return layer
