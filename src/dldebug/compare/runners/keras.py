"""Keras runner (tf_keras and Keras 3): one sub-model whose outputs are every layer's output and input.

Keras keeps channels last; records say so and the comparison moves axes. Weights
are converted to PyTorch's layout here (conv HWIO -> OIHW, dense ``(in, out)`` ->
``(out, in)``), so matching only has to resolve the NHWC-flatten permutation.
Nested models used as layers are captured as one layer.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from dldebug.compare.records import ACTIVATION_KIND, KIND_OF_KERAS, Capture, LayerRecord, Layout

__all__ = ["KerasRunner"]


def _framework(model: Any) -> str:
    return "tf_keras" if type(model).__module__.startswith("tf_keras") else "keras"


def _activation_name(layer: Any) -> str | None:
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None)
    return None if name in (None, "linear") else str(name)


def _default(layer: Any, names: tuple[str, ...], fallback: Any) -> Any:
    """A keyword default of the activation function an ``Activation`` layer wraps."""
    try:
        params = inspect.signature(getattr(layer, "activation", None)).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return fallback
    return next((params[n].default for n in names if n in params), fallback)


def _gelu_approximate(layer: Any) -> str:
    return "tanh" if _default(layer, ("approximate",), False) else "none"


def _config(layer: Any, kind: str) -> dict[str, Any]:
    cfg = layer.get_config()
    if kind == "batchnorm":
        # Keras momentum weights the running value; PyTorch's weights the new batch
        return {"eps": float(cfg["epsilon"]), "momentum": 1.0 - float(cfg["momentum"]),
                "keras_momentum": float(cfg["momentum"])}
    if kind == "layernorm":
        return {"eps": float(cfg["epsilon"])}
    if kind == "leaky_relu":
        if "negative_slope" in cfg or "alpha" in cfg:  # the LeakyReLU layer (default 0.3)
            return {"negative_slope": float(cfg.get("negative_slope", cfg.get("alpha")))}
        # Activation(tf.nn.leaky_relu) / Activation("leaky_relu"): the function's default, 0.2
        return {"negative_slope": float(_default(layer, ("negative_slope", "alpha"), 0.2))}
    if kind == "gelu":
        return {"approximate": _gelu_approximate(layer)}
    if kind in ("conv", "depthwise_conv", "conv_transpose"):
        return {"stride": tuple(cfg["strides"]), "padding": cfg["padding"], "kernel_size": tuple(cfg["kernel_size"])}
    if kind == "avgpool":
        return {"padding": cfg["padding"], "count_include_pad": False}
    if kind == "resize":
        return {"mode": cfg.get("interpolation", "nearest"), "align_corners": False, "coordinate_mode": "half_pixel"}
    if kind in ("lstm", "gru"):
        return {"gate_order": "ifgo" if kind == "lstm" else "zrh", "two_biases": False,
                "reset_after": cfg.get("reset_after"), "hidden_size": cfg["units"]}
    return {}


def _params(layer: Any, kind: str) -> dict[str, np.ndarray]:
    weights = [np.asarray(w, np.float32) for w in layer.get_weights()]
    if not weights:
        return {}
    if kind == "conv" and weights[0].ndim >= 3:
        kernel = np.moveaxis(weights[0], (-1, -2), (0, 1))  # (..., I, O) -> (O, I, ...)
        return {"weight": kernel, **({"bias": weights[1]} if len(weights) > 1 else {})}
    if kind == "dense":
        return {"weight": weights[0].T, **({"bias": weights[1]} if len(weights) > 1 else {})}
    if kind == "batchnorm":
        names = [w.name.split("/")[-1].split(":")[0] for w in layer.weights]
        by_name = dict(zip(names, weights, strict=True))
        mapping = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
                   "moving_variance": "running_var"}
        return {mapping[k]: v for k, v in by_name.items() if k in mapping}
    if kind == "layernorm":
        return dict(zip(("weight", "bias"), weights, strict=False))
    return {f"w{i}": w for i, w in enumerate(weights)}


class KerasRunner:
    """Captures every layer of a functional or Sequential Keras model."""

    layout: Layout = "channels_last"

    def __init__(self, model: Any) -> None:
        self.model = model
        self.framework = _framework(model)
        self.layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
        self.by_name = {layer.name: layer for layer in self.layers}
        self._probe: Any = None

    def _keras(self) -> Any:
        from dldebug.errors import require

        return require("tf_keras" if self.framework == "tf_keras" else "keras", extra="keras",
                       feature="comparing a Keras model")

    def input_shape(self) -> tuple[int | None, ...] | None:
        shape = self.model.inputs[0].shape
        return tuple(None if d is None else int(d) for d in shape)

    def _sub_model(self) -> Any:
        if self._probe is None:
            keras = self._keras()
            outputs = []
            for layer in self.layers:
                # layers with several inputs (Add) or outputs (LSTM return_state): the first one
                first_input = layer.input[0] if isinstance(layer.input, (list, tuple)) else layer.input
                first_output = layer.output[0] if isinstance(layer.output, (list, tuple)) else layer.output
                outputs.extend([first_output, first_input])
            self._probe = keras.Model(self.model.inputs, [*outputs, self.model.outputs[0]])
        return self._probe

    def capture(self, x: np.ndarray) -> Capture:
        values = self._sub_model()([np.asarray(x, np.float32)], training=False)
        arrays = [np.asarray(v) for v in values]
        records = [self._record(layer, arrays[2 * i], arrays[2 * i + 1]) for i, layer in enumerate(self.layers)]
        return Capture(self.framework, "channels_last", records, arrays[-1])

    def _record(self, layer: Any, output: np.ndarray, data_in: np.ndarray) -> LayerRecord:
        type_name = type(layer).__name__
        kind = KIND_OF_KERAS.get(type_name, "other")
        activation = _activation_name(layer)
        fused = None
        if type_name == "Activation" and activation is not None:
            kind = ACTIVATION_KIND.get(activation, activation)
        elif activation is not None and kind in ("conv", "dense", "depthwise_conv"):
            fused = ACTIVATION_KIND.get(activation, activation)
        rec = LayerRecord(layer.name, kind, type_name, self.framework, "channels_last", output=output,
                          input=data_in, params=_params(layer, kind), config=_config(layer, kind),
                          fused_activation=fused)
        if kind == "flatten":
            rec.flatten_from = tuple(data_in.shape[1:])
        return rec

    def run_layers(self, x: np.ndarray, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each named layer called on its own with ``feeds[name]`` (inference mode)."""
        return {name: np.asarray(self.by_name[name](np.asarray(value, np.float32), training=False))
                for name, value in feeds.items() if name in self.by_name}
