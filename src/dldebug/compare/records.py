"""What a runner captures: one :class:`LayerRecord` per layer, in execution order.

Every runner speaks the same small vocabulary so matching, metrics and the
catalogue of known mismatches never look at a framework class again:

* ``kind``: a normalised layer kind (``"conv"``, ``"dense"``, ``"batchnorm"``,
  ``"leaky_relu"`` ...), from the tables below;
* ``params``: weights converted to PyTorch's layout (conv OIHW, dense
  ``(out, in)``, batchnorm ``weight/bias/running_mean/running_var``), so only
  the ambiguous NHWC-flatten permutation is left for matching to resolve;
* ``config``: the settings that differ between frameworks (``eps``,
  ``negative_slope``, ``padding`` ...), with the values the layer really uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["KIND_FAMILY", "KIND_OF_KERAS", "KIND_OF_ONNX", "KIND_OF_TORCH", "PARAMETERISED", "Capture", "InputSpec",
           "LayerRecord", "Layout", "call_name", "family"]

Layout = Literal["channels_first", "channels_last"]

PARAMETERISED = frozenset({"conv", "conv_transpose", "dense", "batchnorm", "layernorm", "lstm", "gru",
                           "embedding", "affine"})

# Kinds that compute the same function and may pair: a BatchNorm and the per-channel Mul/Add a converter
# decomposes it into (tf2onnx, Keras 3).
KIND_FAMILY: dict[str, str] = {"affine": "batchnorm"}

KIND_OF_TORCH: dict[str, str] = {
    "Conv1d": "conv", "Conv2d": "conv", "Conv3d": "conv",
    "ConvTranspose1d": "conv_transpose", "ConvTranspose2d": "conv_transpose", "ConvTranspose3d": "conv_transpose",
    "Linear": "dense", "BatchNorm1d": "batchnorm", "BatchNorm2d": "batchnorm", "BatchNorm3d": "batchnorm",
    "LayerNorm": "layernorm", "ReLU": "relu", "ReLU6": "relu6", "LeakyReLU": "leaky_relu", "GELU": "gelu",
    "SiLU": "silu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax", "ELU": "elu",
    "Flatten": "flatten", "MaxPool1d": "maxpool", "MaxPool2d": "maxpool", "MaxPool3d": "maxpool",
    "AvgPool1d": "avgpool", "AvgPool2d": "avgpool", "AvgPool3d": "avgpool",
    "AdaptiveAvgPool1d": "global_avgpool", "AdaptiveAvgPool2d": "global_avgpool",
    "Upsample": "resize", "UpsamplingBilinear2d": "resize", "UpsamplingNearest2d": "resize",
    "LSTM": "lstm", "GRU": "gru", "Embedding": "embedding", "Dropout": "dropout", "Dropout2d": "dropout",
    "Identity": "identity", "Hardswish": "hardswish", "Hardsigmoid": "hardsigmoid",
    # transformers' own classes (read by name: transformers is never imported here)
    "GELUActivation": "gelu", "NewGELUActivation": "gelu", "GELUTanh": "gelu", "FastGELUActivation": "gelu",
    "SiLUActivation": "silu", "Conv1D": "dense",
}

KIND_OF_KERAS: dict[str, str] = {
    "Conv1D": "conv", "Conv2D": "conv", "Conv3D": "conv", "DepthwiseConv2D": "conv",
    "Conv2DTranspose": "conv_transpose", "Dense": "dense", "BatchNormalization": "batchnorm",
    "LayerNormalization": "layernorm", "ReLU": "relu", "LeakyReLU": "leaky_relu", "ELU": "elu",
    "Softmax": "softmax", "Flatten": "flatten", "MaxPooling1D": "maxpool", "MaxPooling2D": "maxpool",
    "AveragePooling1D": "avgpool", "AveragePooling2D": "avgpool", "GlobalAveragePooling1D": "global_avgpool",
    "GlobalAveragePooling2D": "global_avgpool", "UpSampling2D": "resize", "Resizing": "resize",
    "LSTM": "lstm", "GRU": "gru", "Embedding": "embedding", "Dropout": "dropout", "ZeroPadding2D": "pad",
    "InputLayer": "identity",
}

KIND_OF_ONNX: dict[str, str] = {
    "Conv": "conv", "ConvTranspose": "conv_transpose", "Gemm": "dense", "BatchNormalization": "batchnorm",
    "LayerNormalization": "layernorm", "Relu": "relu", "LeakyRelu": "leaky_relu", "Gelu": "gelu",
    "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax", "Elu": "elu", "Flatten": "flatten",
    "MaxPool": "maxpool", "AveragePool": "avgpool", "GlobalAveragePool": "global_avgpool", "Resize": "resize",
    "LSTM": "lstm", "GRU": "gru", "Dropout": "dropout", "Pad": "pad", "HardSwish": "hardswish",
    "HardSigmoid": "hardsigmoid", "Identity": "identity",
}

# Activations a Keras layer can fuse (``Conv2D(..., activation="relu")``) mapped to kinds.
ACTIVATION_KIND: dict[str, str] = {"relu": "relu", "gelu": "gelu", "sigmoid": "sigmoid", "tanh": "tanh",
                                   "softmax": "softmax", "elu": "elu", "leaky_relu": "leaky_relu",
                                   "silu": "silu", "swish": "silu", "relu6": "relu6",
                                   "hard_swish": "hardswish", "hard_silu": "hardswish", "hard_sigmoid": "hardsigmoid"}


def family(kind: str) -> str:
    """The kind two layers must share to pair: ``affine`` (a decomposed BatchNorm) pairs with ``batchnorm``."""
    return KIND_FAMILY.get(kind, kind)


@dataclass(frozen=True)
class InputSpec:
    """One input a model declares: its name, shape (None for a free size), dtype and image layout.

    ``shape`` and ``dtype`` are None where the model does not say (a PyTorch module).
    """

    name: str
    shape: tuple[int | None, ...] | None = None
    dtype: str | None = None
    layout: Layout = "channels_first"


@dataclass
class LayerRecord:
    """One layer's captured output and the facts needed to match and explain it.

    Args:
        name: the layer's name in its own framework (module path, Keras name, ONNX scope).
        kind: normalised kind, e.g. ``"conv"``; ``"other"`` for plumbing.
        type_name: the framework's class or op type, e.g. ``"BatchNorm2d"``.
        framework: ``"torch"``, ``"onnx"``, ``"tf_keras"`` or ``"keras"``.
        layout: where this framework keeps channels.
        output: the layer's output (in its own layout), or None when not a tensor.
        input: the layer's (first) input, kept for shadow mode.
        params: weights in PyTorch's layout.
        config: framework settings that matter numerically.
        fused_activation: a Keras activation applied inside the layer (``"relu"``).
        flatten_from: for a flatten layer, the per-sample shape it flattened (own layout).
        inputs: every data input of the layer (shadow mode feeds all of them), ``input`` is the first.
        params_digest: a digest of the weights' content, so verdicts on them can be reused ("" = unknown).
    """

    name: str
    kind: str
    type_name: str
    framework: str
    layout: Layout
    output: np.ndarray | None = None
    input: np.ndarray | None = None
    params: dict[str, np.ndarray] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    fused_activation: str | None = None
    flatten_from: tuple[int, ...] | None = None
    inputs: list[np.ndarray] = field(default_factory=list)
    params_digest: str = ""  # content digest of the weights ("" = unknown), see dldebug.compare.weight_memo

    @property
    def parameterised(self) -> bool:
        return self.kind in PARAMETERISED and bool(self.params)

    def describe(self) -> str:
        return f"{self.name} ({self.type_name})"


@dataclass
class Capture:
    """All layer records of one forward pass, plus the model's final output."""

    framework: str
    layout: Layout
    records: list[LayerRecord]
    output: np.ndarray

    def by_name(self) -> dict[str, LayerRecord]:
        return {r.name: r for r in self.records}


def call_name(name: str, call: int) -> str:
    """The record name of the ``call``-th (1-based) run of a layer: ``relu``, then ``relu#2`` ...

    A module used twice in one forward pass (a shared ``self.relu``) gives two records.

    Example:
        >>> call_name("relu", 1), call_name("relu", 2)
        ('relu', 'relu#2')
    """
    return name if call == 1 else f"{name}#{call}"
