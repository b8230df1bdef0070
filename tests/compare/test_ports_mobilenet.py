"""Real converter: tf_keras and Keras 3 MobileNetV2 (96x96, weights=None, BN statistics randomised) vs tf2onnx.

Healthy exports (NHWC default and ``--inputs-as-nchw``) must raise no alarm and pair >= 90% of
the Keras layers with weights, depthwise included; bugs planted in the exported ONNX (or in the
model before export, for a BatchNorm eps) must be found at the right layer in both modes, with
the catalogue's explanation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dldebug import compare_models

pytestmark = [pytest.mark.keras, pytest.mark.onnx, pytest.mark.slow]

X = np.random.default_rng(0).uniform(0, 1, (1, 96, 96, 3)).astype(np.float32)  # NHWC, as Keras takes it
LIBRARIES = ["tf_keras", "keras"]


def _planted(proto: Any, group_prefix: str, op: str, change: Any) -> Any:
    """A copy of ``proto`` with ``change(weights)`` applied to the weight of the ``op`` node of one layer."""
    import onnx

    from dldebug.compare.runners.onnx_graph import OnnxGraph

    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    group = next(g for g in OnnxGraph(copy).groups if g.name.startswith(group_prefix)
                 and any(n.op_type == op for n in g.nodes))
    name = next(n for n in group.nodes if n.op_type == op).input[1]
    init = next(i for i in copy.graph.initializer if i.name == name)
    array = onnx.numpy_helper.to_array(init).copy()
    change(array)
    init.CopyFrom(onnx.numpy_helper.from_array(array, name))
    return copy


def _weighted(model: Any) -> list[str]:
    return [layer.name for layer in model.layers if layer.get_weights()]


@pytest.mark.parametrize("nchw", [False, True], ids=["nhwc", "nchw"])
@pytest.mark.parametrize("library", LIBRARIES)
def test_healthy_export_has_no_false_alarm_and_pairs_depthwise(library: str, nchw: bool, mobilenet: Any,
                                                               mobilenet_onnx: Any) -> None:
    model, proto = mobilenet(library), mobilenet_onnx(library, nchw)
    x = np.moveaxis(X, -1, 1) if nchw else X  # the ONNX model's own layout: must be accepted as is
    for mode in ("propagate", "shadow"):
        result = compare_models(model, proto, x, mode=mode)
        assert result, [r.row() for r in result.divergences]
        assert not result.report.filter(min_severity="warning"), [f.message for f in result.report.findings]
    paired = {part for r in result.rows for part in r.layer_a.split("+")}
    weighted = _weighted(model)
    assert sum(n in paired for n in weighted) / len(weighted) >= 0.9
    depthwise = [layer.name for layer in model.layers if type(layer).__name__ == "DepthwiseConv2D"]
    assert len(depthwise) == 17 and set(depthwise) <= paired
    assert sum(r.kind == "relu6" for r in result.rows) == 35
    assert result.settings["layouts"] == {"a": "channels_last", "b": "channels_first" if nchw else "channels_last"}
    assert bool(result.settings["transposed"]["a"]) == nchw  # NCHW input: transposed for Keras, with a finding
    assert result.report.has("compare.input_layout") == nchw


def _first(result: Any) -> Any:
    first = result.first_divergence
    assert first is not None, "the planted bug was missed"
    return first


@pytest.mark.parametrize(("library", "nchw"), [("tf_keras", False), ("keras", True)])
def test_depthwise_channel_scaled_is_found_at_that_layer(library: str, nchw: bool, mobilenet: Any,
                                                         mobilenet_onnx: Any) -> None:
    bad = _planted(mobilenet_onnx(library, nchw), "block_3_depthwise", "Conv",
                   lambda w: w.__setitem__(5, w[5] * 0.5))
    for mode in ("propagate", "shadow"):
        result = compare_models(mobilenet(library), bad, X, mode=mode)
        first = _first(result)
        assert first.layer_a.split("+")[0] == "block_3_depthwise", (mode, first.layer_a)
        cause = first.explanations[0]
        assert cause["rule"] == "weights.differ"
        if library == "tf_keras":  # BN folded into the depthwise conv: the channel and its factor are named
            assert first.weights == "folded, differ"
            assert cause["evidence"]["channels"] == [5] and cause["evidence"]["channel_factors"] == [0.5]
        if mode == "shadow":
            assert [r.layer_a for r in result.divergences] == [first.layer_a]


@pytest.mark.parametrize(("library", "nchw"), [("tf_keras", False), ("keras", True)])
def test_classifier_row_scaled_is_found_in_both_modes(library: str, nchw: bool, mobilenet: Any,
                                                      mobilenet_onnx: Any) -> None:
    bad = _planted(mobilenet_onnx(library, nchw), "predictions", "MatMul",
                   lambda w: w.__setitem__((slice(None), 7), w[:, 7] * 0.5))  # (in, out): row 7 of (out, in)
    for mode in ("propagate", "shadow"):
        result = compare_models(mobilenet(library), bad, X, mode=mode)
        first = _first(result)
        assert first.layer_a == "predictions" and first.explanations[0]["rule"] == "weights.differ", mode
        assert not result


@pytest.mark.parametrize("library", LIBRARIES)
def test_depthwise_batchnorm_eps_is_found_although_folded(library: str, mobilenet: Any, to_onnx: Any) -> None:
    model = mobilenet(library)
    bn = model.get_layer("block_3_depthwise_BN")
    bn.epsilon = 1e-5  # the converted model's BN uses PyTorch's default ...
    try:
        bad = to_onnx(model, library == "keras")
    finally:
        bn.epsilon = 1e-3  # ... the reference keeps Keras' 1e-3
    for mode in ("propagate", "shadow"):
        result = compare_models(model, bad, X, mode=mode)
        first = _first(result)
        assert first.layer_a.endswith("block_3_depthwise_BN"), (mode, first.layer_a)
        cause = first.explanations[0]
        assert cause["rule"] == "batchnorm.eps"
        assert cause["evidence"]["eps_a"] == pytest.approx(1e-3)
        assert cause["evidence"]["eps_b"] == pytest.approx(1e-5, rel=0.05)
        finding = result.report.get("compare.diverged")
        assert finding is not None and finding.evidence["likely_cause"] == "batchnorm.eps"
        if mode == "shadow":
            assert [r.layer_a for r in result.divergences] == [first.layer_a]
