"""Real exporters on transformers: tiny BERT and GPT-2 vs their ONNX exports, int64 token inputs.

BERT through the dynamo exporter and TorchScript, GPT-2 through dynamo (its TorchScript export adds a
``logits_to_keep`` input the eager model does not take as a tensor). No false alarm, >= 90% of the
Linear / Conv1D layers compared, and bugs planted in the exported ONNX found at the right layer in
propagate and shadow mode.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from dldebug import compare_models
from dldebug.weights import is_linear_like

pytestmark = [pytest.mark.onnx, pytest.mark.slow]
onnx = pytest.importorskip("onnx")
pytest.importorskip("transformers")

EXPORTS = [("bert", "dynamo"), ("bert", "torchscript"), ("gpt2", "dynamo")]


def _edited(proto: Any, layer: str, edit: Callable[[Any, Any, Any], None]) -> Any:
    """A copy of ``proto`` with ``edit(copy, node, graph)`` applied to the main node of ``layer``."""
    from dldebug.compare.runners.onnx_graph import OnnxGraph

    edited = onnx.ModelProto()
    edited.CopyFrom(proto)
    graph = OnnxGraph(edited)
    group = next(g for g in graph.groups if g.name == layer)
    node = graph.kind(group, None)[1]
    edit(edited, node, graph)
    return edited


def _scale_output_row(row: int) -> Callable[[Any, Any, Any], None]:
    """Scale output feature ``row`` of a MatMul/Gemm weight (stored (in, out) unless Gemm transB)."""
    def edit(proto: Any, node: Any, graph: Any) -> None:
        name = node.input[1]
        init = next(i for i in proto.graph.initializer if i.name == name)
        weight = onnx.numpy_helper.to_array(init).copy()
        weight[:, row] *= 0.5
        init.CopyFrom(onnx.numpy_helper.from_array(weight, name))
    return edit


def _set_epsilon(proto: Any, node: Any, graph: Any) -> None:
    for attr in node.attribute:
        if attr.name == "epsilon":
            attr.f = 1e-3


@pytest.mark.parametrize(("name", "exporter"), EXPORTS)
def test_healthy_export_compares_every_projection(name: str, exporter: str, hf_models: dict[str, nn.Module],
                                                  hf_onnx: Any, tokens: dict[str, torch.Tensor]) -> None:
    model, proto = hf_models[name], hf_onnx(name, exporter)
    for mode in ("propagate", "shadow"):
        result = compare_models(model, proto, dict(tokens), mode=mode)
        assert result, [(r.layer_a, r.status) for r in result.divergences]
        assert not result.report.filter(min_severity="warning"), [f.message for f in result.report.findings]
    linear = [n for n, m in model.named_modules() if is_linear_like(m)]
    compared = {r.layer_a for r in result.rows if r.kind == "dense" and r.metrics}
    assert sum(n in compared for n in linear) / len(linear) >= 0.9, sorted(set(linear) - compared)
    assert result.settings["inputs"]["input_ids"]["dtype"] == "int64"
    assert any(r.kind == "embedding" and r.within for r in result.rows)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_bert_value_row_scaled(exporter: str, hf_models: dict[str, nn.Module], hf_onnx: Any,
                               tokens: dict[str, torch.Tensor]) -> None:
    layer = "bert.encoder.layer.1.attention.self.value"
    bad = _edited(hf_onnx("bert", exporter), layer, _scale_output_row(3))
    for mode in ("propagate", "shadow"):
        result = compare_models(hf_models["bert"], bad, dict(tokens), mode=mode)
        first = result.first_divergence
        assert first is not None and first.layer_a == layer, (mode, first)
        assert first.explanations[0]["rule"] == "weights.differ"
        if mode == "shadow":
            assert [r.layer_a for r in result.divergences] == [layer]


def test_bert_layernorm_eps(hf_models: dict[str, nn.Module], hf_onnx: Any, tokens: dict[str, torch.Tensor]) -> None:
    layer = "bert.encoder.layer.0.attention.output.LayerNorm"
    bad = _edited(hf_onnx("bert", "dynamo"), layer, _set_epsilon)
    for mode in ("propagate", "shadow"):
        result = compare_models(hf_models["bert"], bad, dict(tokens), mode=mode)
        first = result.first_divergence
        assert first is not None and first.layer_a == layer, (mode, first)
        cause = first.explanations[0]
        assert cause["rule"] == "layernorm.eps"
        assert (cause["evidence"]["eps_a"], cause["evidence"]["eps_b"]) == pytest.approx((1e-12, 1e-3))


def test_gpt2_conv1d_row_scaled(hf_models: dict[str, nn.Module], hf_onnx: Any,
                                tokens: dict[str, torch.Tensor]) -> None:
    layer = "transformer.h.1.mlp.c_fc"
    bad = _edited(hf_onnx("gpt2", "dynamo"), layer, _scale_output_row(10))
    for mode in ("propagate", "shadow"):
        result = compare_models(hf_models["gpt2"], bad, dict(tokens), mode=mode)
        first = result.first_divergence
        assert first is not None and first.layer_a == layer, (mode, first)
        assert first.explanations[0]["rule"] == "weights.differ"
        if mode == "shadow":
            assert [r.layer_a for r in result.divergences] == [layer]


def test_embedding_row_scaled_is_found_by_shadow_mode(hf_models: dict[str, nn.Module],
                                                      tokens: dict[str, torch.Tensor]) -> None:
    """torch vs torch with int64 ids: the embedding is fed the same ids, its table row differs."""
    model = hf_models["bert"]
    bad = copy.deepcopy(model)
    token = int(tokens["input_ids"][0, 2])
    with torch.no_grad():
        bad.bert.embeddings.word_embeddings.weight[token] *= 0.5
    result = compare_models(model, bad, dict(tokens), mode="shadow")
    assert [r.layer_a for r in result.divergences] == ["bert.embeddings.word_embeddings"]
    assert compare_models(model, copy.deepcopy(model), dict(tokens), mode="shadow")


def test_token_ids_as_float_are_refused(hf_onnx: Any, hf_models: dict[str, nn.Module],
                                        tokens: dict[str, torch.Tensor]) -> None:
    from dldebug.errors import InputError

    floats = {k: v.float() for k, v in tokens.items()}
    with pytest.raises(InputError, match="input 'input_ids' of model b .* is int64"):
        compare_models(hf_models["bert"], hf_onnx("bert", "dynamo"), floats)
    with pytest.raises(InputError, match=r"takes inputs \['input_ids', 'attention_mask'\]; the inputs lack"):
        compare_models(hf_models["bert"], hf_onnx("bert", "dynamo"), {"input_ids": tokens["input_ids"]})
