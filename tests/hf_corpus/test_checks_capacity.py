"""parameter_audit on GPT-2 (tied lm_head/wte, eight transformers Conv1D) and BERT with a dict batch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dldebug import parameter_audit


def test_gpt2_tied_weights_are_counted_once_and_shares_sum_to_one() -> None:
    from dldebug.demo.tiny_hf import tiny_gpt2_lm, token_batch

    model = tiny_gpt2_lm()
    report = parameter_audit(model, example_input=token_batch(num_labels=None))
    unique = {p.data_ptr(): p.numel() for p in model.parameters()}  # the oracle: distinct storages
    naive = sum(p.numel() for _, m in model.named_modules() for p in m.parameters(recurse=False))
    assert report.meta["params"] == sum(unique.values()) == naive - model.lm_head.weight.numel()
    records = {r["layer"]: r for r in report.table("capacity.layers").records()}
    assert sum(r["share"] for r in records.values()) == pytest.approx(1.0)
    assert records["lm_head"]["params"] == 0 and "tied to transformer.wte.weight" in records["lm_head"]["note"]
    assert records["transformer.wte"]["params"] == model.transformer.wte.weight.numel()
    assert report.meta["tied"] == "transformer.wte.weight = lm_head.weight"
    conv1d = [r for r in records.values() if r["type"] == "Conv1D (linear)"]
    assert len(conv1d) == 8


def test_a_dominant_transformers_conv1d_fed_by_a_flattened_map_is_flagged() -> None:
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.Flatten(), Conv1D(64, 64 * 32 * 32))  # nf, nx
    as_linear = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.Flatten(), nn.Linear(64 * 32 * 32, 64))
    x = torch.randn(1, 3, 32, 32)
    finding = parameter_audit(model, example_input=x).get("capacity.dominant_layer")
    oracle = parameter_audit(as_linear, example_input=x).get("capacity.dominant_layer")
    assert finding is not None and oracle is not None
    assert finding.evidence["type"] == "Conv1D" and finding.evidence["input_map"] == "64x32x32"
    for key in ("params", "fix_params_bottleneck", "fix_params_global_pool", "total_params_after_fix"):
        assert finding.evidence[key] == oracle.evidence[key]


def test_bert_with_a_dict_batch_and_on_the_meta_device() -> None:
    from dldebug.demo.tiny_hf import tiny_bert_classifier, token_batch

    model = tiny_bert_classifier()
    real = parameter_audit(model, example_input=token_batch(), n_train_samples=1000)
    assert real.meta["params"] == sum(p.numel() for p in model.parameters())
    meta = parameter_audit(model.to("meta"), example_input=token_batch())  # BERT calls .item(): no meta run
    assert meta.meta["params"] == real.meta["params"]
    static = meta.get("capacity.static_audit")
    assert static is not None and static.severity.value == "info"
    assert "Tensor.item() cannot be called on meta tensors" in static.message
