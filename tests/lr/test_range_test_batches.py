"""lr_range_test reads batches and outputs through dldebug.model_io: dicts, structured outputs, one clear error."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dldebug.errors import InputError
from dldebug.lr import lr_range_test


class KeywordNet(nn.Module):
    """Takes keyword inputs and returns a dict, as Hugging Face models do."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, features: torch.Tensor, scale: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"hidden": features, "logits": self.net(features * scale)}


def data(count: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(32, 12, generator=generator), torch.randint(0, 4, (32,), generator=generator))
            for _ in range(count)]


def test_dict_batches_and_dict_outputs_match_the_plain_run() -> None:
    torch.manual_seed(0)
    keyword = KeywordNet()
    plain = copy.deepcopy(keyword.net)
    loss = nn.CrossEntropyLoss()
    dict_batches = [{"features": x, "scale": torch.ones(1), "labels": y} for x, y in data()]
    structured = lr_range_test(keyword, dict_batches, loss, torch.optim.SGD(keyword.parameters(), lr=0.1),
                               start=1e-4, end=1.0, steps=15)
    reference = lr_range_test(plain, data(), loss, torch.optim.SGD(plain.parameters(), lr=0.1), start=1e-4,
                              end=1.0, steps=15)
    assert structured.losses == pytest.approx(reference.losses, abs=1e-6)
    named = lr_range_test(keyword, dict_batches, loss, torch.optim.SGD(keyword.parameters(), lr=0.1),
                          start=1e-4, end=1.0, steps=15, output=lambda out: out["logits"])
    assert named.losses == structured.losses


@pytest.mark.parametrize("loader", [data()[0], torch.zeros(3, 12), "batches.pt"])
def test_one_batch_instead_of_a_loader_is_one_clear_error(loader: object) -> None:
    model = nn.Linear(12, 4)
    with pytest.raises(InputError) as info:
        lr_range_test(model, loader, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1))  # type: ignore[arg-type]
    assert str(info.value).startswith("lr_range_test: loader must be an iterable of batches")
    assert str(info.value).endswith("For one batch, pass [batch].")


def test_output_naming_a_missing_tensor_is_one_clear_error() -> None:
    model = KeywordNet()
    before = copy.deepcopy(model.state_dict())
    batches = [{"features": x, "scale": torch.ones(1), "labels": y} for x, y in data(1)]
    with pytest.raises(InputError) as info:
        lr_range_test(model, batches, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1),
                      output="scores")
    assert str(info.value).startswith("lr_range_test: output='scores' is not in the model's output, which is "
                                      "dict with {hidden: Tensor(32, 12), logits: Tensor(32, 4)}.")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
