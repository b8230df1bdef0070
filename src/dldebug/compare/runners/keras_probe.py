"""One forward pass of a Keras model that yields every layer's output and every layer's weights.

The probe is a functional sub-model whose outputs are each distinct tensor a layer
reads or writes, built once per Keras model and kept (weakly) for later comparisons
of the same model. Eager TensorFlow pays a large fixed cost per op (the first call of
each oneDNN kernel), so when the same model is captured a second time the probe is
traced once into a graph function (``tf.function``) that returns the layer outputs
and the weights (read at call time, so weight changes are seen) in one call: about
1-2 s once, then several times faster than eager. A one-off comparison (the CLI)
never pays the trace. The graph is used only while the model's structure and the
settings the comparison reads (eps, strides, activations ...) are those it was traced
with; otherwise the probe runs eagerly again. Outputs are identical to eager
execution (TensorFlow runs the same kernels; tested).
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable
from typing import Any

import numpy as np

__all__ = ["Probe", "probe_for"]

_PROBES: weakref.WeakKeyDictionary[Any, Probe] = weakref.WeakKeyDictionary()


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


class Probe:
    """The all-layers sub-model of one Keras model (no reference to the model itself, so the cache is weak)."""

    def __init__(self, keras: Any, model: Any, layers: list[Any], graph_capable: bool) -> None:
        tensors: list[Any] = []
        index: dict[int, int] = {}

        def slot(tensor: Any) -> int:
            if id(tensor) not in index:
                index[id(tensor)] = len(tensors)
                tensors.append(tensor)
            return index[id(tensor)]
        # layers with several outputs (LSTM return_state): the first one
        self.slots = [(slot(_listed(layer.output)[0]), [slot(t) for t in _listed(layer.input)]) for layer in layers]
        self.slots.append((slot(model.outputs[0]), []))
        self.structure = _structure(model)
        self.sub_model = keras.Model(model.inputs, tensors)
        self.layer_weights = [list(layer.weights) for layer in layers]  # Keras' weights property is slow: once
        self.weight_names = [[str(w.name) for w in weights] for weights in self.layer_weights]
        self.graph_capable = graph_capable
        self.uses = 0
        self._graph: Any = None
        self._traced_settings: Hashable = None

    def run(self, arrays: list[np.ndarray], settings: Hashable) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
        """Every probed tensor and each layer's weights (``layer.get_weights()`` order), as numpy.

        ``settings`` fingerprints what the comparison reads from the layers; the graph is used only
        while it is the one the graph was traced with.
        """
        self.uses += 1
        if self.graph_capable and self.uses >= 2:
            try:
                return self._run_graph(arrays, settings)
            except Exception:  # a model the graph cannot trace or run: eager from now on (errors show there)
                self.graph_capable, self._graph = False, None
        values = [np.asarray(v) for v in _listed(self.sub_model(arrays, training=False))]
        return values, [[np.asarray(w, np.float32) for w in _read(layer)] for layer in self.layer_weights]

    def _run_graph(self, arrays: list[np.ndarray], settings: Hashable) -> tuple[list[np.ndarray],
                                                                                 list[list[np.ndarray]]]:
        if self._graph is None or self._traced_settings != settings:
            self._graph, self._traced_settings = self._trace(), settings
        outputs, flat = self._graph(arrays)
        values = [np.asarray(v) for v in _listed(outputs)]
        weights, start = [], 0
        for layer in self.layer_weights:
            weights.append([np.asarray(w, np.float32) for w in flat[start:start + len(layer)]])
            start += len(layer)
        return values, weights

    def _trace(self) -> Any:
        import tensorflow as tf

        sub_model = self.sub_model
        flat = [w for layer in self.layer_weights for w in layer]

        def forward(inputs: Any) -> Any:
            return sub_model(inputs, training=False), [tf.convert_to_tensor(w) for w in flat]
        return tf.function(forward, reduce_retracing=True)


def _read(weights: list[Any]) -> list[Any]:
    return [w.numpy() for w in weights]


def _structure(model: Any) -> tuple[int, ...]:
    """Identity of the layers: a Sequential that gained or lost a layer needs a new probe."""
    return tuple(id(layer) for layer in model.layers)


def probe_for(keras: Any, model: Any, layers: list[Any], graph_capable: bool) -> Probe:
    """The cached probe of ``model``, built when missing or when the model's layers changed."""
    try:
        probe = _PROBES.get(model)
    except TypeError:  # an object that cannot be weakly referenced: no cache
        return Probe(keras, model, layers, graph_capable)
    if probe is None or probe.structure != _structure(model):
        probe = Probe(keras, model, layers, graph_capable)
        _PROBES[model] = probe
    return probe
