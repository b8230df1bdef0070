"""Transfer cuts on transformer stacks and ResNet stages, and feature extractors equal to hidden_states.

Issue 13: task_specific_layers cut BERT at ``encoder.layer.0.attention.self.query`` (the whole
encoder called task-specific), ViT inside its first attention block, ResNetModel inside its last
residual block. Blocks are now units: the cut is after the last block (and its final norm), before
the pooler and the head.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dldebug import InputError, feature_extractor, task_specific_layers
from dldebug.checks import suggested_cut, transfer_report


@pytest.mark.parametrize(("name", "cut", "specific"), [
    ("bert", "bert.encoder.layer.1", ["bert.pooler.dense", "classifier"]),
    ("vit", "vit.layernorm", ["classifier"]),
    ("gpt2", "transformer.ln_f", ["lm_head"]),
    ("wav2vec2", "wav2vec2.encoder.layers.1", ["lm_head"]),
    ("resnet", "encoder.stages.1", []),
])
def test_cuts_fall_between_blocks(name: str, cut: str, specific: list[str]) -> None:
    from dldebug.demo.tiny_hf import HF_CORPUS

    model = HF_CORPUS[name]()
    assert suggested_cut(model) == cut
    assert task_specific_layers(model) == specific
    blocks = [n for n, m in model.named_modules() if n and n.rsplit(".", 1)[-1].isdigit()
              and n.rsplit(".", 1)[0].endswith(("layer", "layers", "h", "stages"))]
    assert not any(c.startswith(f"{b}.") for b in blocks for c in [cut, *specific])  # never inside a block


def test_bert_feature_extractor_takes_keyword_inputs_and_equals_hidden_states() -> None:
    from dldebug.demo.tiny_hf import tiny_bert_classifier, token_batch

    model, batch = tiny_bert_classifier(), token_batch(num_labels=None)
    features = feature_extractor(model, suggested_cut(model))
    with torch.no_grad():
        assert torch.equal(features(**batch), model(**batch, output_hidden_states=True).hidden_states[-1])


def test_resnet_and_vit_extractors_equal_the_models_own_features() -> None:
    from dldebug.demo.tiny_hf import tiny_resnet_model, tiny_vit_classifier

    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    resnet, vit = tiny_resnet_model(), tiny_vit_classifier()
    with torch.no_grad():
        assert torch.equal(feature_extractor(resnet, suggested_cut(resnet))(x),
                           resnet(x, output_hidden_states=True).hidden_states[-1])
        assert torch.equal(feature_extractor(vit, suggested_cut(vit))(pixel_values=x), vit.vit(x).last_hidden_state)


def test_output_picks_a_tensor_of_a_structured_layer_output() -> None:
    from dldebug.demo.tiny_hf import tiny_resnet_model

    model, x = tiny_resnet_model(), torch.randn(2, 3, 32, 32)
    whole = feature_extractor(model, "encoder")  # ResNetEncoder returns a BaseModelOutput...
    picked = feature_extractor(model, "encoder", output="last_hidden_state")
    with torch.no_grad():
        raw: Any = whole(x)
        assert not isinstance(raw, torch.Tensor) and torch.equal(picked(x), raw.last_hidden_state)


def test_transfer_report_of_a_backbone_and_num_classes() -> None:
    from dldebug.demo.tiny_hf import tiny_bert_classifier, tiny_resnet_model

    finding = transfer_report(tiny_resnet_model()).get("transfer.head")
    assert finding is not None and finding.evidence["output_layer"] is None
    assert "has no task head: the whole model is a feature extractor" in finding.message
    assert task_specific_layers(tiny_bert_classifier(num_labels=3), num_classes=3) == ["bert.pooler.dense",
                                                                                       "classifier"]
    with pytest.raises(InputError, match="No Linear or convolution outputs num_classes=10"):
        task_specific_layers(tiny_resnet_model(), num_classes=10)
