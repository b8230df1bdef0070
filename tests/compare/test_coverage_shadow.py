"""Coverage and honesty: unpaired layers with reasons, low coverage, divergences between unpaired layers,
shadow mode that cannot feed a layer never passing it, inputs as tuples and dicts, the narrow table."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dldebug import compare_models
from dldebug.errors import InputError

X = torch.randn(1, 4, generator=torch.Generator().manual_seed(0))


def _mlp(activation: nn.Module) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), activation, nn.Linear(8, 3)).eval()


def test_divergence_in_an_unpaired_stretch_is_reported_between_its_neighbours() -> None:
    result = compare_models(_mlp(nn.Tanh()), _mlp(nn.Sigmoid()), X)
    assert not result
    assert [u["layer"] for u in result.unpaired_a] == ["1"] and [u["layer"] for u in result.unpaired_b] == ["1"]
    assert "no tanh layer" in result.unpaired_a[0]["reason"]
    assert result.between == ("0", "2", ["1", "1 (b)"])
    finding = result.report.get("compare.diverged")
    assert finding is not None and "between 0 and 2" in finding.message
    assert finding.evidence["unpaired_between"] == "1, 1 (b)"
    healthy = compare_models(_mlp(nn.Tanh()), _mlp(nn.Tanh()), X)
    assert healthy and healthy.between is None and not healthy.unpaired_a


def test_low_coverage_warns_and_healthy_full_coverage_does_not() -> None:
    torch.manual_seed(0)
    deep = nn.Sequential(*[nn.Linear(4, 4) for _ in range(4)]).eval()
    shallow = nn.Sequential(copy.deepcopy(deep[0])).eval()
    result = compare_models(deep, shallow, X)
    finding = result.report.get("compare.low_coverage")
    assert finding is not None and finding.evidence["paired_weighted_share_a"] == pytest.approx(0.25)
    assert not compare_models(deep, copy.deepcopy(deep), X).report.has("compare.low_coverage")


class _KeywordCall(nn.Module):
    """Calls its projection with a keyword argument: a forward hook sees no positional input to replace."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inp, self.fc = nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(input=torch.relu(self.inp(x)))


def test_shadow_mode_never_passes_a_divergent_layer_it_could_not_feed() -> None:
    model, bad = _KeywordCall().eval(), _KeywordCall().eval()
    with torch.no_grad():
        bad.fc.weight[1] *= 0.5
    result = compare_models(model, bad, X, mode="shadow")
    assert not result
    row = next(r for r in result.rows if r.layer_a == "fc")
    assert row.status == "diverged, not shadowed" and result.first_divergence is row
    finding = result.report.get("compare.not_shadowed")
    assert finding is not None and finding.severity.value == "error"
    healthy = compare_models(model, _KeywordCall().eval(), X, mode="shadow")
    assert healthy and healthy.report.get("compare.not_shadowed").severity.value == "info"


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.fc = nn.Embedding(10, 4), nn.Linear(4, 2)

    def forward(self, ids: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(ids) * scale)


@pytest.mark.parametrize("style", ["tuple", "dict"])
def test_positional_and_keyword_inputs_keep_their_dtypes(style: str) -> None:
    ids, scale = torch.tensor([[1, 2, 3]]), torch.full((1, 3, 1), 2.0)
    inputs = (ids, scale) if style == "tuple" else {"ids": ids, "scale": scale}
    model = _TwoInputs().eval()
    result = compare_models(model, copy.deepcopy(model), inputs, mode="shadow")
    assert result and result.rows[0].layer_a == "embed"
    described = result.settings["inputs"]
    assert [v["dtype"] for v in described.values()] == ["int64", "float32"]
    bad = copy.deepcopy(model)
    with torch.no_grad():
        bad.embed.weight[2] += 1.0
    assert [r.layer_a for r in compare_models(model, bad, inputs, mode="shadow").divergences] == ["embed"]


def test_empty_and_non_numeric_inputs_are_clear_errors() -> None:
    model = _mlp(nn.ReLU())
    with pytest.raises(InputError, match="inputs is an empty dict"):
        compare_models(model, model, {})
    with pytest.raises(InputError, match="numeric tensors"):
        compare_models(model, model, [["a"]])


def test_narrow_table_keeps_the_ends_of_long_names() -> None:
    result = compare_models(_mlp(nn.ReLU()), _mlp(nn.ReLU()), X)
    narrow = result.layers_table(80)
    assert narrow.columns == ("#", "layer a", "layer b", "max abs", "status")
    assert result.layers_table(120).columns[-1] == "status" and len(result.layers_table().columns) == 14
    assert result.report_for_width(80).tables[0].columns == narrow.columns
