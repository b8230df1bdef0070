"""Comparing the same models again reuses work (the Keras probe and its graph function, the ONNX analysis and
sessions, weight verdicts): the results must be exactly those of a first comparison, and every edit of a
model between calls (a weight, a node, a Keras layer setting) must be seen."""

from __future__ import annotations

import copy
import gc
import json
import weakref
from typing import Any

import numpy as np
import pytest
import torch

from dldebug import compare_models
from dldebug.compare.runners import keras_probe
from dldebug.compare.runners.onnx_cache import fingerprint

X = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
KERAS_X = np.random.default_rng(0).standard_normal((1, 12, 12, 3)).astype(np.float32)


def _rows(result: Any) -> list[Any]:
    return json.loads(result.to_json())["rows"]


@pytest.mark.keras
@pytest.mark.parametrize("library", ["tf_keras", "keras"])
def test_keras_graph_function_gives_the_eager_results_and_sees_edits(library: str) -> None:
    keras = pytest.importorskip(library)
    from dldebug.demo.keras_port import build_keras_cnn, port_to_torch

    model = build_keras_cnn(keras, seed=1)
    port = port_to_torch(model)
    first = compare_models(model, port, KERAS_X)  # eager
    again = [compare_models(model, port, KERAS_X) for _ in range(2)]  # traced once, then the graph function
    assert first and all(_rows(r) == _rows(first) for r in again)
    assert keras_probe._PROBES[model]._graph is not None  # the later calls did run the graph function

    bn = model.get_layer("bn1")  # a weight edited in the reference: the graph reads variables at call time
    gamma, beta, mean, var = bn.get_weights()
    gamma[3] *= 2.0
    bn.set_weights([gamma, beta, mean, var])
    edited = compare_models(model, port, KERAS_X)
    fresh = compare_models(_clone(keras, model), port, KERAS_X)  # a first (eager) comparison of the same weights
    assert not edited and edited.first_divergence is not None and edited.first_divergence.layer_a == "bn1"
    assert _rows(edited) == _rows(fresh)

    bn.set_weights([gamma / np.where(np.arange(gamma.size) == 3, 2.0, 1.0), beta, mean, var])
    bn.epsilon = 1e-5  # a setting edited: not the one the graph was traced with, so it is traced again
    eps = compare_models(model, port, KERAS_X)
    assert eps.first_divergence is not None and eps.first_divergence.layer_a == "bn1"
    assert eps.first_divergence.explanations[0]["rule"] == "batchnorm.eps"
    assert eps.first_divergence.metrics["max_abs"] > 1e-4  # computed with eps 1e-5, as the record says


def _clone(keras: Any, model: Any) -> Any:
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for layer, original in zip(clone.layers, model.layers, strict=True):
        if hasattr(original, "epsilon"):
            layer.epsilon = original.epsilon
    return clone


@pytest.mark.keras
def test_cached_keras_probe_does_not_keep_the_model_alive(tf_keras: Any) -> None:
    from dldebug.demo.keras_port import build_keras_cnn, port_to_torch

    model = build_keras_cnn(tf_keras, seed=2)
    port = port_to_torch(model)
    for _ in range(2):
        assert compare_models(model, port, KERAS_X)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


@pytest.mark.onnx
def test_onnx_edited_in_place_between_calls_is_never_stale(exported: dict[str, Any]) -> None:
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(exported[False]))
    model = exported["model"]
    healthy = compare_models(model, proto, X)
    assert healthy and _rows(compare_models(model, proto, X)) == _rows(healthy)
    key = fingerprint(proto)
    init = next(i for i in proto.graph.initializer if i.name == "9.weight")
    array = onnx.numpy_helper.to_array(init).copy()
    array[0, 0] += 1.0
    init.CopyFrom(onnx.numpy_helper.from_array(array, init.name))  # same size, other bytes
    assert fingerprint(proto) != key
    edited = compare_models(model, proto, X)
    assert edited.first_divergence is not None and edited.first_divergence.layer_b == "9"
    assert edited.first_divergence.weights == "differ"
    node = next(n for n in proto.graph.node if n.op_type == "LeakyRelu")
    next(a for a in node.attribute if a.name == "alpha").f = 0.2  # an attribute, no weight
    assert fingerprint(proto) != key
    slope = compare_models(model, proto, X)
    assert any(e["rule"] == "leaky_relu.slope" for r in slope.rows for e in r.explanations)


def test_torch_weight_edited_between_calls_changes_the_weights_column(make_cnn: Any) -> None:
    model = make_cnn()
    port = copy.deepcopy(model)
    assert compare_models(model, port, X).rows[0].weights == "same"
    with torch.no_grad():
        port[0].weight[0, 0, 0, 0] += 0.25
    result = compare_models(model, port, X)
    assert result.rows[0].weights == "differ" and result.first_divergence.layer_a == "0"
