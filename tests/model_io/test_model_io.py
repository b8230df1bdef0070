"""The model-call layer on plain modules and on real Hugging Face models (tiny configs, random weights)."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, namedtuple

import pytest
import torch
from torch import nn

from dldebug.errors import InputError
from dldebug.model_io import Batch, call_model, describe, map_tensors, model_loss, read_loss, select_output
from dldebug.weights import is_hf_conv1d, linear_weight, tied_groups, unique_parameter_count


@dataclasses.dataclass
class Out:
    hidden: torch.Tensor
    logits: torch.Tensor | None = None


class TwoInputs(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + 2 * b


@pytest.mark.parametrize(("output", "expected"), [
    (torch.ones(2), torch.ones(2)),
    ({"loss": torch.tensor(1.0), "logits": torch.full((2,), 3.0)}, torch.full((2,), 3.0)),
    ({"last_hidden_state": torch.full((2,), 4.0), "pooler_output": torch.zeros(2)}, torch.full((2,), 4.0)),
    (OrderedDict(loss=torch.tensor(1.0), scores=torch.full((2,), 5.0)), torch.full((2,), 5.0)),
    ((torch.full((2,), 6.0), torch.zeros(1)), torch.full((2,), 6.0)),
    (Out(hidden=torch.full((2,), 7.0)), torch.full((2,), 7.0)),
    (Out(hidden=torch.zeros(2), logits=torch.full((2,), 8.0)), torch.full((2,), 8.0)),
])
def test_select_output_automatic(output: object, expected: torch.Tensor) -> None:
    assert torch.equal(select_output(output), expected)


def test_select_output_explicit_name_index_callable() -> None:
    out = {"a": torch.zeros(1), "b": torch.ones(3)}
    assert select_output(out, "b").shape == (3,)
    assert select_output(out, 1).shape == (3,)
    assert select_output(out, lambda o: o["b"] * 2).sum() == 6
    assert select_output(Out(hidden=torch.ones(2)), "hidden").shape == (2,)


def test_select_output_errors_name_what_was_received() -> None:
    with pytest.raises(InputError, match=r"output='nope' is not in the model's output, which is dict with \{a: "):
        select_output({"a": torch.zeros(1)}, "nope")
    with pytest.raises(InputError, match="returned str.*Pass output="):
        select_output("text", tool="probe")
    with pytest.raises(InputError, match="returned int, expected a tensor"):
        select_output({"a": torch.zeros(1)}, lambda _: 3)


def test_call_model_dispatch() -> None:
    net = TwoInputs()
    a, b = torch.ones(2), torch.full((2,), 3.0)
    assert torch.equal(call_model(net, (a, b)), a + 2 * b)
    assert torch.equal(call_model(net, {"a": a, "b": b}), a + 2 * b)
    assert torch.equal(call_model(nn.Identity(), a), a)


def test_batch_from_user_shapes() -> None:
    x, y = torch.randn(4, 3), torch.arange(4)
    loss = nn.CrossEntropyLoss()
    pair = Batch.from_user((x, y), loss_fn=loss)
    assert pair.inputs is x and pair.targets is y and pair.size == 4
    triple = Batch.from_user([x, x, y], loss_fn=loss)
    assert isinstance(triple.inputs, tuple) and len(triple.inputs) == 2 and triple.targets is y
    keyed = Batch.from_user({"input_ids": x, "labels": y}, loss_fn=loss)
    assert set(keyed.inputs) == {"input_ids"} and keyed.targets is y
    own = Batch.from_user({"input_ids": x, "labels": y}, loss_fn=None)
    assert set(own.inputs) == {"input_ids", "labels"}
    assert Batch.from_user(x, loss_fn=None).targets is None
    half = keyed.take(2)
    assert half.inputs["input_ids"].shape == (2, 3) and half.targets.shape == (2,)


@pytest.mark.parametrize(("batch", "message"), [
    ({}, "empty dict"),
    ({"input_ids": torch.zeros(2)}, "needs its targets under 'labels'"),
    (torch.zeros(2, 3), "must hold targets too"),
    ((torch.zeros(2),), "holds only"),
    ("text", "got str"),
    (3, "got int"),
])
def test_batch_from_user_errors(batch: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        Batch.from_user(batch, loss_fn=nn.CrossEntropyLoss(), tool="can_overfit")


def test_read_loss() -> None:
    assert float(read_loss({"loss": torch.tensor(2.0), "logits": torch.zeros(2)})) == 2.0
    assert float(read_loss((torch.tensor(3.0), torch.zeros(2)))) == 3.0
    with pytest.raises(InputError, match="no 'loss'.*under 'labels'"):
        read_loss({"logits": torch.zeros(2)})


def test_model_loss_with_and_without_loss_fn() -> None:
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1])
    loss, raw = model_loss(net, Batch.from_user((x, y), loss_fn=nn.functional.cross_entropy),
                           nn.functional.cross_entropy)
    assert torch.allclose(loss, nn.functional.cross_entropy(net(x), y)) and raw.shape == (5, 2)
    with pytest.raises(InputError, match="scalar tensor; got shape \\(5,\\)"):
        model_loss(net, Batch.from_user((x, y)), nn.CrossEntropyLoss(reduction="none"))


def test_map_tensors_keeps_container_types() -> None:
    Pair = namedtuple("Pair", "a b")
    value = {"x": [torch.ones(1), (torch.ones(2),)], "p": Pair(torch.ones(3), 4)}
    doubled = map_tensors(value, lambda t: t * 2)
    assert isinstance(doubled["x"], list) and isinstance(doubled["x"][1], tuple)
    assert isinstance(doubled["p"], Pair) and doubled["p"].b == 4 and doubled["p"].a.sum() == 6


def test_describe() -> None:
    assert describe(torch.zeros(2, 3)) == "Tensor of shape (2, 3) (float32)"
    assert describe({"logits": torch.zeros(2)}) == "dict with {logits: Tensor(2,)}"
    assert describe((torch.zeros(1), 2)) == "tuple of 2 (Tensor(1,), int)"


def test_tied_and_unique_parameters() -> None:
    emb = nn.Embedding(10, 4)
    head = nn.Linear(4, 10)
    head.weight = emb.weight
    model = nn.ModuleDict({"emb": emb, "head": head})
    assert tied_groups(model) == [["emb.weight", "head.weight"]]
    assert unique_parameter_count(model) == 40 + 10
    head.bias.requires_grad_(False)
    assert unique_parameter_count(model, trainable_only=True) == 40


# ---- real Hugging Face models ---------------------------------------------------------------

hf = pytest.importorskip("dldebug.demo.tiny_hf")
pytest.importorskip("transformers")


def test_hf_bert_dict_batch_own_loss_equals_explicit_loss() -> None:
    model = hf.tiny_bert_classifier()
    data = hf.token_batch()
    own, raw = model_loss(model, Batch.from_user(data, loss_fn=None), None)
    explicit, _ = model_loss(model, Batch.from_user(data, loss_fn=nn.CrossEntropyLoss()), nn.CrossEntropyLoss())
    assert torch.allclose(own, explicit)
    assert torch.allclose(own, nn.functional.cross_entropy(raw.logits, data["labels"]))
    assert select_output(raw).shape == (8, 3)


def test_hf_outputs_pick_the_tensor_a_tool_needs() -> None:
    images = torch.randn(2, 3, 32, 32)
    assert select_output(hf.tiny_vit_classifier()(images)).shape == (2, 5)
    assert select_output(hf.tiny_resnet_model()(images)).shape == (2, 32, 4, 4)  # last_hidden_state
    gpt2_out = hf.tiny_gpt2_lm()(**hf.token_batch(num_labels=None))
    assert select_output(gpt2_out).shape == (8, 12, 100)


def test_hf_gpt2_conv1d_and_tied_head() -> None:
    model = hf.tiny_gpt2_lm()
    conv1d = [name for name, m in model.named_modules() if is_hf_conv1d(m)]
    assert len(conv1d) == 8
    layer = model.get_submodule("transformer.h.0.mlp.c_fc")
    x = torch.randn(3, 32)
    assert torch.allclose(layer(x), x @ linear_weight(layer).t() + layer.bias, atol=1e-6)
    assert ["transformer.wte.weight", "lm_head.weight"] in tied_groups(model)
    assert unique_parameter_count(model) == sum(p.numel() for p in model.parameters())
    per_module = sum(p.numel() for m in model.modules() for p in m.parameters(recurse=False))
    assert per_module == unique_parameter_count(model) + model.lm_head.weight.numel()
