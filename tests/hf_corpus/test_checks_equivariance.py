"""probe_equivariance on Hugging Face models, with no wrapper (issue 13's acceptance corpus).

ResNetModel: the first translation break is the embedder's strided convolution; at an on-grid shift
the circular-padding oracle tells its zero padding from the stride. ViTModel: judged on its 4x4
token grid (class token aside); at a whole-patch shift the break is its position embeddings (the
oracle zeroes them: exact), never a Dropout, and there is no global pooling to claim.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dldebug import probe_equivariance


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_resnet_model_breaks_first_at_the_embedders_strided_conv(images: torch.Tensor) -> None:
    from dldebug.demo.tiny_hf import tiny_resnet_model

    report = probe_equivariance(tiny_resnet_model(), images, transforms=("translate",))
    finding = report.get("equivariance.broken")
    assert finding is not None and finding.evidence["layer"] == "embedder.embedder.convolution"
    assert "strided convolution (stride 2)" in finding.message and finding.evidence["reason"] == "1/2 px"
    on_grid = probe_equivariance(tiny_resnet_model(), images, transforms=("translate",), shifts=(2,))
    padding = on_grid.get("equivariance.broken")
    assert padding is not None and padding.evidence["layer"] == "embedder.embedder.convolution"
    assert "zero padding at the border" in padding.message and padding.evidence["circular_padding_error"] < 1e-6


def test_resnet_output_is_its_last_hidden_state(images: torch.Tensor) -> None:
    from dldebug.demo.tiny_hf import tiny_resnet_model

    model = tiny_resnet_model()
    rows = probe_equivariance(model, images, transforms=("translate",)).table("equivariance.layers").records()
    with torch.no_grad():
        expected = model(images).last_hidden_state.shape
    assert rows[-1]["layer"] == "(output)" and rows[-1]["shape"] == "x".join(map(str, expected[1:]))
    pooled = probe_equivariance(model, images, transforms=("translate",), shifts=(8,), output="pooler_output")
    assert pooled.table("equivariance.layers").records()[-1]["shape"] == "32x1x1"


def test_vit_whole_patch_shift_blames_position_embeddings_not_dropout(images: torch.Tensor) -> None:
    from dldebug.demo.tiny_hf import tiny_vit_model

    report = probe_equivariance(tiny_vit_model(), {"pixel_values": images}, transforms=("translate",), shifts=(8,))
    assert report.meta["input"] == "pixel_values"
    finding = report.get("equivariance.broken")
    assert finding is not None
    assert finding.evidence["layer"] == "embeddings" and finding.evidence["type"] == "ViTEmbeddings"
    assert finding.evidence["seen_at"] == "embeddings.dropout"
    assert finding.evidence["error_without_position_embeddings"] < 1e-5
    assert "position embeddings (embeddings.position_embeddings)" in finding.message
    assert "global pooling" not in finding.message and "Dropout is" not in finding.message
    rows = {r["layer"]: r for r in report.table("equivariance.layers").records()}
    assert rows["embeddings.patch_embeddings.projection"]["translate 8"] < 1e-6  # patchify: exact on the grid
    assert rows["(output)"]["shape"] == "17x32"  # 4x4 patch tokens + the class token


def test_vit_without_position_embeddings_is_equivariant_to_whole_patch_shifts(images: torch.Tensor) -> None:
    from dldebug.demo.tiny_hf import tiny_vit_model

    model = tiny_vit_model()
    with torch.no_grad():
        model.embeddings.position_embeddings.zero_()
        base = model(images).last_hidden_state
        moved = model(torch.roll(images, (8, 8), (2, 3))).last_hidden_state
        grid = torch.roll(base[:, 1:].reshape(2, 4, 4, 32), (1, 1), (1, 2)).reshape(2, 16, 32)
        expected = torch.cat([base[:, :1], grid], 1)  # the oracle: patch tokens move, the class token stays
    report = probe_equivariance(model, images, transforms=("translate",), shifts=(8, 16))
    assert not report.findings
    output = report.table("equivariance.layers").records()[-1]
    assert output["translate 8"] == pytest.approx(float((moved - expected).norm() / expected.norm()), abs=1e-6)
    assert output["translate 8"] < 1e-6


def test_vit_pixel_shifts_stop_at_the_patch_embedding(images: torch.Tensor) -> None:
    from dldebug.demo.tiny_hf import tiny_vit_classifier

    report = probe_equivariance(tiny_vit_classifier(), images, transforms=("translate",), task="classification")
    invariance = report.get("invariance.broken")
    assert invariance is not None
    assert invariance.evidence["first_break_layer"] == "vit.embeddings.patch_embeddings.projection"
    assert "patch embedding" in invariance.evidence["first_break_cause"]


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_models_without_images_get_one_clear_error(name: str) -> None:
    from dldebug.demo.tiny_hf import HF_CORPUS, token_batch
    from dldebug.errors import InputError

    batch: Any = token_batch(num_labels=None)
    with pytest.raises(InputError, match=r"probe_equivariance needs a floating batch .* got dict with \{input_ids"):
        probe_equivariance(HF_CORPUS[name](), batch)
