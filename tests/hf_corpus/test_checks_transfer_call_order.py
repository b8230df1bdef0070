"""Transfer cuts where registration order is not call order, and shared layers (models outside the first corpus).

OPT registers ``decoder.final_layer_norm`` before ``decoder.layers`` (it runs after them): the cut skipped it.
BART registers ``decoder.layernorm_embedding`` after the layers (it runs before them): the cut fell on it and the
extractor returned the embeddings. ALBERT calls one shared layer group for every layer: the extractor stopped at
its first call. T5 and Llama end their stacks with their own norm classes (``T5LayerNorm``, ``LlamaRMSNorm``).
The oracle: the model's own last hidden state equals the extractor's output at the suggested cut.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from dldebug import feature_extractor, task_specific_layers
from dldebug.checks import suggested_cut

transformers = pytest.importorskip("transformers")


def _albert() -> nn.Module:
    return transformers.AlbertForSequenceClassification(transformers.AlbertConfig(
        vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, num_labels=3))


def _bart() -> nn.Module:
    return transformers.BartForConditionalGeneration(transformers.BartConfig(
        vocab_size=100, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=1,
        bos_token_id=0, eos_token_id=2, decoder_start_token_id=2))


def _opt() -> nn.Module:
    return transformers.OPTForCausalLM(transformers.OPTConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=64,
        max_position_embeddings=64, word_embed_proj_dim=32, pad_token_id=1))


def _t5() -> nn.Module:
    return transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=100, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2,
        decoder_start_token_id=0, pad_token_id=0))


def _llama() -> nn.Module:
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=64))


IDS = torch.randint(3, 100, (4, 10), generator=torch.Generator().manual_seed(0))
DECODER = torch.randint(3, 100, (4, 5), generator=torch.Generator().manual_seed(1))
CASES: dict[str, tuple[Callable[[], nn.Module], dict[str, torch.Tensor], str, str, list[str]]] = {
    "albert": (_albert, {"input_ids": IDS}, "hidden_states", "albert.encoder.albert_layer_groups.0",
               ["albert.pooler", "classifier"]),
    "bart": (_bart, {"input_ids": IDS, "decoder_input_ids": DECODER}, "decoder_hidden_states",
             "model.decoder.layers.0", ["lm_head"]),
    "opt": (_opt, {"input_ids": IDS}, "hidden_states", "model.decoder.final_layer_norm", ["lm_head"]),
    "t5": (_t5, {"input_ids": IDS, "decoder_input_ids": DECODER}, "decoder_hidden_states",
           "decoder.final_layer_norm", ["lm_head"]),
    "llama": (_llama, {"input_ids": IDS}, "hidden_states", "model.norm", ["lm_head"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_cut_gives_the_models_last_hidden_state(name: str) -> None:
    build, inputs, key, cut, specific = CASES[name]
    torch.manual_seed(0)
    model = build().eval()
    assert suggested_cut(model) == cut
    assert task_specific_layers(model) == specific
    extractor = feature_extractor(model, cut)
    with torch.no_grad():
        last = getattr(model(**inputs, output_hidden_states=True), key)[-1]
        for _ in range(2):  # the first call counts a shared layer's calls; the second stops at the last one
            features: Any = extractor(**inputs)
            features = features[0] if isinstance(features, tuple) else features
            assert torch.allclose(features, last, atol=1e-6)


class Shared(nn.Module):
    """One layer called three times, then a head."""

    def __init__(self) -> None:
        super().__init__()
        self.layer, self.head = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(3):
            x = torch.tanh(self.layer(x))
        return self.head(x)


class Untraceable(Shared):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > -1e9):  # data-dependent: fx cannot trace it, the hooked extractor runs
            return super().forward(x)
        return x


@pytest.mark.parametrize("cls", [Shared, Untraceable], ids=["fx", "hooks"])
def test_a_shared_layer_gives_its_last_calls_output(cls: type[nn.Module]) -> None:
    torch.manual_seed(0)
    model, x = cls(), torch.randn(5, 4)
    hidden = x
    with torch.no_grad():
        for _ in range(3):
            expected = model.layer(hidden)  # the layer's own output at each call; the last one is wanted
            hidden = torch.tanh(expected)
    extractor = feature_extractor(model, "layer")
    for _ in range(2):
        assert torch.allclose(extractor(x), expected, atol=1e-5)
