"""Tiny Hugging Face models built from their configs: random weights, nothing downloaded.

The real architectures practitioners use (BERT, GPT-2, ViT, ResNet, Wav2Vec2) at hidden sizes
<= 64 and one or two layers, so every tool can be tried on them in seconds on a CPU. Used by the
tests (the "HF corpus") and the demo. Needs the ``transformers`` extra.
"""

from __future__ import annotations

from typing import Any

import torch

from dldebug.errors import require

__all__ = [
    "HF_CORPUS",
    "tiny_bert_classifier",
    "tiny_gpt2_lm",
    "tiny_resnet_model",
    "tiny_vit_classifier",
    "tiny_vit_model",
    "tiny_wav2vec2_ctc",
    "token_batch",
]


def _transformers() -> Any:
    return require("transformers", extra="transformers", feature="the tiny Hugging Face models")


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


def tiny_bert_classifier(*, num_labels: int = 3, vocab_size: int = 100, seed: int = 0) -> torch.nn.Module:
    """``BertForSequenceClassification``: hidden 32, 2 layers, 2 heads."""
    t = _transformers()
    _seeded(seed)
    config = t.BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, max_position_embeddings=64, num_labels=num_labels)
    return t.BertForSequenceClassification(config).eval()


def tiny_gpt2_lm(*, vocab_size: int = 100, seed: int = 0) -> torch.nn.Module:
    """``GPT2LMHeadModel``: n_embd 32, 2 layers, 2 heads; ``lm_head`` tied to ``transformer.wte``."""
    t = _transformers()
    _seeded(seed)
    config = t.GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                          bos_token_id=0, eos_token_id=0)
    return t.GPT2LMHeadModel(config).eval()


def _vit_config(t: Any, num_labels: int) -> Any:
    return t.ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64, num_labels=num_labels)


def tiny_vit_model(*, seed: int = 0) -> torch.nn.Module:
    """``ViTModel`` on 32x32 RGB images, 8x8 patches (a 4x4 token grid plus the class token)."""
    t = _transformers()
    _seeded(seed)
    return t.ViTModel(_vit_config(t, 2), add_pooling_layer=False).eval()


def tiny_vit_classifier(*, num_labels: int = 5, seed: int = 0) -> torch.nn.Module:
    """``ViTForImageClassification`` on 32x32 RGB images, 8x8 patches."""
    t = _transformers()
    _seeded(seed)
    return t.ViTForImageClassification(_vit_config(t, num_labels)).eval()


def tiny_resnet_model(*, seed: int = 0) -> torch.nn.Module:
    """``ResNetModel`` (no head): embedding 16, two stages of widths 16 and 32."""
    t = _transformers()
    _seeded(seed)
    config = t.ResNetConfig(num_channels=3, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                            layer_type="basic")
    return t.ResNetModel(config).eval()


def tiny_wav2vec2_ctc(*, vocab_size: int = 12, seed: int = 0) -> torch.nn.Module:
    """``Wav2Vec2ForCTC``: hidden 32, 2 layers, two small feature-extractor convolutions."""
    t = _transformers()
    _seeded(seed)
    config = t.Wav2Vec2Config(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
                              num_feat_extract_layers=2, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                              pad_token_id=0)
    return t.Wav2Vec2ForCTC(config).eval()


def token_batch(*, batch: int = 8, length: int = 12, vocab_size: int = 100, num_labels: int | None = 3,
                seed: int = 0) -> dict[str, torch.Tensor]:
    """``{"input_ids", "attention_mask"[, "labels"]}`` with int64 tokens; ``labels`` per sequence when
    ``num_labels`` is given, else none."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab_size, (batch, length), generator=generator)
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if num_labels is not None:
        out["labels"] = torch.randint(0, num_labels, (batch,), generator=generator)
    return out


HF_CORPUS = {
    "bert": tiny_bert_classifier,
    "gpt2": tiny_gpt2_lm,
    "vit": tiny_vit_classifier,
    "vit_model": tiny_vit_model,
    "resnet": tiny_resnet_model,
    "wav2vec2": tiny_wav2vec2_ctc,
}
