"""Which layers are factorised, and the findings that say why the others are kept dense."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dldebug.compress import compress_linear_layers, select_layers, tied_parameters
from dldebug.errors import InputError
from dldebug.weights import unique_parameter_count


class TiedLM(nn.Module):
    """A toy language model: the output head shares the embedding's weight (as GPT-2's lm_head does)."""

    def __init__(self, vocab: int = 50, width: int = 24) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.body = nn.Linear(width, width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(self.embed(ids))))


class Attention(nn.Module):
    """nn.MultiheadAttention reads out_proj.weight directly: a replacement of out_proj would never run."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(32, 2, batch_first=True)
        self.fc = nn.Linear(32, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.attn(x, x, x)[0])


def test_a_tied_head_is_kept_dense_with_its_reason() -> None:
    torch.manual_seed(0)
    model = TiedLM()
    result = compress_linear_layers(model, rank=4)
    assert result.ranks == {"body": 4, "head": None}
    finding = result.report.get("compress.tied_weights")
    assert finding is not None and finding.evidence == {"layer": "head", "shape": "50 x 24", "type": "Linear",
                                                        "tied_to": "embed.weight"}
    assert result.model.head.weight is result.model.embed.weight
    assert result.model_params_after == unique_parameter_count(result.model) < unique_parameter_count(model)
    # the layers' own totals count the shared matrix once: body 24*24+24, head 50*24
    assert (result.params_before, result.params_after) == (600 + 1200, 4 * 48 + 24 + 1200)


def test_untying_would_have_grown_the_model() -> None:
    """Why the skip matters: the head factorised at rank 4 leaves the embedding's full copy in place."""
    torch.manual_seed(0)
    model = TiedLM()
    before = unique_parameter_count(model)
    from dldebug.compress import lowrank_linear
    model.head = lowrank_linear(model.head, 4)
    assert unique_parameter_count(model) > before


def test_a_layer_registered_under_two_names_is_not_a_tie() -> None:
    shared = nn.Linear(16, 16)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert tied_parameters(model, shared) == ()
    result = compress_linear_layers(model, rank=2)
    assert not result.report.has("compress.tied_weights")
    assert result.ranks == {"0": 2}
    assert result.model[0] is result.model[2] and isinstance(result.model[0], nn.Sequential)


def test_a_linear_subclass_is_reported_not_replaced() -> None:
    torch.manual_seed(0)
    model = Attention().eval()
    result = compress_linear_layers(model, rank=4)
    skipped = result.report.get("compress.skipped_unsupported")
    assert skipped is not None and skipped.evidence["layer"] == "attn.out_proj"
    assert "nn.MultiheadAttention does for out_proj" in skipped.message
    assert result.ranks == {"fc": 4, "attn.out_proj": None}
    x = torch.randn(2, 5, 32)
    with torch.no_grad():  # out_proj untouched: the attention's output is bit-identical
        assert torch.equal(result.model.attn(x, x, x)[0], model.attn(x, x, x)[0])


def test_a_plain_model_gets_no_skip_findings(mlp: nn.Sequential) -> None:
    result = compress_linear_layers(mlp, rank=4)
    assert not result.report.has("compress.tied_weights")
    assert not result.report.has("compress.skipped_unsupported")
    chosen, skipped = select_layers(mlp)
    assert list(chosen) == ["0", "2", "4"] and skipped == []


def test_naming_a_linear_subclass_is_an_error() -> None:
    with pytest.raises(InputError) as info:
        compress_linear_layers(Attention(), rank=4, layers=["attn.out_proj"])
    assert str(info.value).startswith("Layer 'attn.out_proj' is a NonDynamicallyQuantizableLinear; it subclasses "
                                      "nn.Linear and may be read through .weight by its parent")


def test_a_model_whose_only_layer_is_tied_compresses_nothing_and_says_why() -> None:
    torch.manual_seed(0)
    model = TiedLM()
    result = compress_linear_layers(model, rank=4, layers=["head"])
    applied = result.report.get("compress.applied")
    assert applied.severity.value == "warning"
    assert applied.fix == "See the other compress.* findings for why each layer was kept dense."
    assert result.model_params_after == result.model_params_before
