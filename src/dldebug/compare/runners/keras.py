"""Keras runner (tf_keras and Keras 3): one sub-model whose outputs are every layer's output and inputs.

The sub-model is built once per Keras model and, from the second comparison of the
same model on, runs as a graph function (:mod:`~dldebug.compare.runners.keras_probe`).
Settings are read from the layers' attributes (``epsilon``, ``strides`` ...).

The layout is the model's own (the first convolution's ``data_format``, else channels
last); records say so and the comparison moves axes. Weights are converted to
PyTorch's layout here (conv HWIO -> OIHW, a depthwise kernel ``(kh, kw, C, m)`` ->
``(C*m, 1, kh, kw)``, dense ``(in, out)`` -> ``(out, in)``), so matching only has to
resolve the NHWC-flatten permutation. Nested models used as layers are one layer.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from dldebug.compare.inputs import ModelInputs
from dldebug.compare.records import ACTIVATION_KIND, KIND_OF_KERAS, Capture, InputSpec, LayerRecord, Layout
from dldebug.compare.runners.keras_probe import probe_for
from dldebug.compare.weight_memo import weights_digest

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


class _Settings:
    """A layer's settings read from its attributes (cheap); ``get_config()`` only for one it lacks."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self._config: dict[str, Any] | None = None

    def _cfg(self) -> dict[str, Any]:
        if self._config is None:
            self._config = dict(self.layer.get_config())
        return self._config

    def has(self, name: str) -> bool:
        return hasattr(self.layer, name) or name in self._cfg()

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self.layer, name) if hasattr(self.layer, name) else self._cfg().get(name, default)


def _config(layer: Any, kind: str, variables: list[Any]) -> dict[str, Any]:
    """The settings of ``layer`` that differ between frameworks (``variables``: its ``layer.weights``)."""
    cfg = _Settings(layer)
    if kind == "batchnorm":
        # Keras momentum weights the running value; PyTorch's weights the new batch
        return {"eps": float(cfg.get("epsilon")), "momentum": 1.0 - float(cfg.get("momentum")),
                "keras_momentum": float(cfg.get("momentum"))}
    if kind == "layernorm":
        return {"eps": float(cfg.get("epsilon"))}
    if kind == "leaky_relu":
        if type(layer).__name__ != "Activation" and (cfg.has("negative_slope") or cfg.has("alpha")):
            # the LeakyReLU layer (default 0.3)
            slope = cfg.get("negative_slope") if cfg.has("negative_slope") else cfg.get("alpha")
            return {"negative_slope": float(slope)}
        # Activation(tf.nn.leaky_relu) / Activation("leaky_relu"): the function's default, 0.2
        return {"negative_slope": float(_default(layer, ("negative_slope", "alpha"), 0.2))}
    if kind == "gelu":
        return {"approximate": _gelu_approximate(layer)}
    if kind in ("conv", "conv_transpose"):
        groups = int(cfg.get("groups", 1) or 1)
        if type(layer).__name__ == "DepthwiseConv2D":
            groups = int(variables[0].shape[2])
        return {"stride": tuple(cfg.get("strides")), "padding": cfg.get("padding"),
                "kernel_size": tuple(cfg.get("kernel_size")), "groups": groups}
    if kind == "relu6":
        return {"min": 0.0, "max": 6.0}
    if kind == "avgpool":
        return {"padding": cfg.get("padding"), "count_include_pad": False}
    if kind == "resize":
        return {"mode": cfg.get("interpolation", "nearest"), "align_corners": False, "coordinate_mode": "half_pixel"}
    if kind in ("lstm", "gru"):
        return {"gate_order": "ifgo" if kind == "lstm" else "zrh", "two_biases": False,
                "reset_after": cfg.get("reset_after"), "hidden_size": cfg.get("units")}
    return {}


def _params(layer: Any, kind: str, weights: list[np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """``weights`` (``layer.get_weights()``, float32; ``names``: the variables' names) in PyTorch's layout."""
    if not weights:
        return {}
    if kind == "conv" and type(layer).__name__ == "DepthwiseConv2D":
        kh, kw, channels, multiplier = weights[0].shape  # output channel c*m + j is input c's j-th filter
        kernel = weights[0].reshape(kh, kw, channels * multiplier).transpose(2, 0, 1)[:, None]
        return {"weight": np.ascontiguousarray(kernel), **({"bias": weights[1]} if len(weights) > 1 else {})}
    if kind == "conv" and weights[0].ndim >= 3:
        kernel = np.moveaxis(weights[0], (-1, -2), (0, 1))  # (..., I, O) -> (O, I, ...)
        return {"weight": kernel, **({"bias": weights[1]} if len(weights) > 1 else {})}
    if kind == "dense":
        return {"weight": weights[0].T, **({"bias": weights[1]} if len(weights) > 1 else {})}
    if kind == "batchnorm":
        names = [name.split("/")[-1].split(":")[0] for name in names]
        by_name = dict(zip(names, weights, strict=True))
        mapping = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
                   "moving_variance": "running_var"}
        return {mapping[k]: v for k, v in by_name.items() if k in mapping}
    if kind == "layernorm":
        return dict(zip(("weight", "bias"), weights, strict=False))
    return {f"w{i}": w for i, w in enumerate(weights)}


def _kind(layer: Any) -> str:
    type_name = type(layer).__name__
    kind = KIND_OF_KERAS.get(type_name, "other")
    if type_name == "ReLU":
        cfg = _Settings(layer)
        if cfg.get("max_value") is not None and float(cfg.get("max_value")) == 6.0 \
                and not cfg.get("negative_slope") and not cfg.get("threshold"):
            return "relu6"
    return kind


def _layout(layers: list[Any]) -> Layout:
    for layer in layers:
        fmt = getattr(layer, "data_format", None)
        if fmt in ("channels_first", "channels_last") and _kind(layer) in ("conv", "conv_transpose"):
            return fmt  # type: ignore[return-value]
    return "channels_last"


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


class KerasRunner:
    """Captures every layer of a functional or Sequential Keras model."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.framework = _framework(model)
        self.layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
        self.by_name = {layer.name: layer for layer in self.layers}
        self.layout: Layout = _layout(self.layers)

    def _keras(self) -> Any:
        from dldebug.errors import require

        return require("tf_keras" if self.framework == "tf_keras" else "keras", extra="keras",
                       feature="comparing a Keras model")

    def input_specs(self) -> list[InputSpec] | None:
        specs = []
        for i, tensor in enumerate(self.model.inputs):
            name = str(getattr(tensor, "name", "") or f"input_{i}").split(":")[0]
            dtype = getattr(tensor, "dtype", "float32")
            dtype = str(getattr(dtype, "name", dtype))
            specs.append(InputSpec(name, tuple(None if d is None else int(d) for d in tensor.shape), dtype,
                                   self.layout))
        return specs

    def _arrays(self, x: ModelInputs) -> list[np.ndarray]:
        return [np.asarray(a) for a in x.arrays]

    def _describe(self, layer: Any, variables: list[Any]) -> tuple[str, dict[str, Any], str | None]:
        """``(kind, config, fused activation)`` of a layer, read before the run."""
        kind = _kind(layer)
        activation = _activation_name(layer)
        fused = None
        if type(layer).__name__ == "Activation" and activation is not None:
            kind = ACTIVATION_KIND.get(activation, activation)
        elif activation is not None and kind in ("conv", "dense"):
            fused = ACTIVATION_KIND.get(activation, activation)
        return kind, _config(layer, kind, variables), fused

    def _graph_capable(self) -> bool:
        if self.framework == "tf_keras":
            return True
        backend = getattr(self._keras(), "backend", None)
        return getattr(backend, "backend", lambda: "")() == "tensorflow"

    def capture(self, x: ModelInputs) -> Capture:
        probe = probe_for(self._keras(), self.model, self.layers, self._graph_capable())
        described = [self._describe(layer, v) for layer, v in zip(self.layers, probe.layer_weights, strict=True)]
        arrays, weights = probe.run(self._arrays(x), repr(described))
        records = [self._record(layer, arrays[out], [arrays[i] for i in ins], w, names, d)
                   for layer, (out, ins), w, names, d in zip(self.layers, probe.slots, weights, probe.weight_names,
                                                             described, strict=False)]
        return Capture(self.framework, self.layout, records, arrays[probe.slots[-1][0]])

    def _record(self, layer: Any, output: np.ndarray, inputs: list[np.ndarray], weights: list[np.ndarray],
                names: list[str], described: tuple[str, dict[str, Any], str | None]) -> LayerRecord:
        kind, config, fused = described
        data_in = inputs[0]
        layout = getattr(layer, "data_format", None) or self.layout
        rec = LayerRecord(layer.name, kind, type(layer).__name__, self.framework, layout, output=output,
                          input=data_in, params=_params(layer, kind, weights, names), config=config,
                          fused_activation=fused, inputs=inputs,
                          params_digest=f"{names}|{weights_digest(weights)}" if weights else "")
        if kind == "flatten":
            rec.flatten_from = tuple(data_in.shape[1:])
        return rec

    def run_layers(self, x: ModelInputs, feeds: dict[str, list[np.ndarray]],
                   spans: dict[str, str] | None = None) -> dict[str, np.ndarray]:
        """Each named layer called on its own with ``feeds[name]`` (inference mode).

        ``spans[name] = last``: the layers from ``name`` through ``last`` are called one after the other.
        """
        order = {layer.name: i for i, layer in enumerate(self.layers)}
        out = {}
        for name, values in feeds.items():
            end = (spans or {}).get(name, name)
            if name not in order or end not in order or not values or order[end] < order[name]:
                continue
            value: Any = values[0] if len(values) == 1 else list(values)
            for layer in self.layers[order[name]:order[end] + 1]:
                value = _listed(layer(value, training=False))[0]
            out[end] = np.asarray(value)
        return out
