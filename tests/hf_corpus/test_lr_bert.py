"""lr_range_test on BertForSequenceClassification: dict batches, the model's own loss, exact restore."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("transformers")

from dldebug.demo.tiny_hf import tiny_bert_classifier, token_batch
from dldebug.errors import InputError
from dldebug.lr import lr_range_test

STEPS = 20


@pytest.fixture
def bert() -> torch.nn.Module:
    return tiny_bert_classifier()


def batches(count: int = 4) -> list[dict[str, torch.Tensor]]:
    return [token_batch(batch=16, seed=i) for i in range(count)]


def snapshot(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, object]:
    return {"tensors": {name: t.detach().clone() for name, t in
                        (*model.named_parameters(), *model.named_buffers(remove_duplicate=False))},
            "grads": {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()},
            "training": {name: m.training for name, m in model.named_modules()},
            "optimizer": copy.deepcopy(optimizer.state_dict()), "rng": torch.get_rng_state()}


def assert_same(before: dict, after: dict) -> None:
    assert before["tensors"].keys() == after["tensors"].keys()
    for name, value in before["tensors"].items():
        assert torch.equal(value, after["tensors"][name]), name
    for name, grad in before["grads"].items():
        other = after["grads"][name]
        assert (grad is None and other is None) or torch.equal(grad, other), name
    assert before["training"] == after["training"]
    assert torch.equal(before["rng"], after["rng"])
    old, new = before["optimizer"], after["optimizer"]
    assert old["param_groups"] == new["param_groups"]
    for key, state in old["state"].items():
        for field, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(new["state"][key][field]))


def test_the_models_own_loss_equals_cross_entropy_on_its_logits(bert: torch.nn.Module) -> None:
    """loss_fn=None (outputs.loss) and CrossEntropyLoss on the selected logits: the same run, step by step."""
    optimizer = torch.optim.AdamW(bert.parameters(), lr=1e-3)
    own = lr_range_test(bert, batches(), None, optimizer, start=1e-5, end=1.0, steps=STEPS)
    explicit = lr_range_test(bert, batches(), torch.nn.CrossEntropyLoss(), optimizer, start=1e-5, end=1.0,
                             steps=STEPS, output="logits")
    auto = lr_range_test(bert, batches(), torch.nn.CrossEntropyLoss(), optimizer, start=1e-5, end=1.0,
                         steps=STEPS)
    assert len(own.losses) == STEPS
    assert own.losses == pytest.approx(explicit.losses, abs=1e-6)
    assert auto.losses == explicit.losses


def test_everything_is_restored_exactly(bert: torch.nn.Module) -> None:
    optimizer = torch.optim.AdamW(bert.parameters(), lr=1e-3)
    batch = token_batch(batch=16, seed=9)
    bert.train()
    optimizer.zero_grad()
    bert(**batch).loss.backward()
    optimizer.step()  # momentum state and gradients exist
    bert.bert.encoder.eval()  # mixed train/eval flags must come back as they were
    before = snapshot(bert, optimizer)
    result = lr_range_test(bert, batches(), None, optimizer, start=1e-5, end=10, steps=STEPS)
    assert result.lrs[-1] > 1.0
    assert_same(before, snapshot(bert, optimizer))


def test_a_dataloader_of_dicts(bert: torch.nn.Module) -> None:
    rows = token_batch(batch=64)
    dataset = [{key: value[i] for key, value in rows.items()} for i in range(64)]
    # its own generator: a DataLoader otherwise draws its seed from the global RNG, changing the dropout masks
    loader = torch.utils.data.DataLoader(dataset, batch_size=16, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(bert.parameters(), lr=0.01)
    from_loader = lr_range_test(bert, loader, None, optimizer, start=1e-4, end=1.0, steps=STEPS)
    as_list = [{k: v[i:i + 16] for k, v in rows.items()} for i in range(0, 64, 16)]
    from_list = lr_range_test(bert, as_list, None, optimizer, start=1e-4, end=1.0, steps=STEPS)
    assert from_loader.losses == pytest.approx(from_list.losses, abs=1e-6)


@pytest.mark.parametrize(("loader", "loss_fn", "message"), [
    (token_batch(), None, "lr_range_test: loader must be an iterable of batches (a DataLoader, a list of (inputs, "
                          "targets) pairs or of dicts); got dict with {input_ids: Tensor(8, 12)"),
    ([{k: v for k, v in token_batch().items() if k != "labels"}], torch.nn.CrossEntropyLoss(),
     "lr_range_test: a dict batch with a loss_fn needs its targets under 'labels'"),
    ([token_batch(num_labels=None)], None, "lr_range_test: loss_fn=None means the model computes its own loss, but "
                                           "its output is SequenceClassifierOutput with {logits: Tensor(8, 3)}"),
    ([{"pixel_values": torch.zeros(2, 3), "labels": torch.zeros(2)}], None,
     "lr_range_test: the first training step failed on the batch dict with {pixel_values: Tensor(2, 3), labels: "
     "Tensor(2,)}"),
    ([], None, "lr_range_test: the loader produced no batch"),
    ([7], None, "lr_range_test: a batch must be (inputs, targets), a tensor, or a dict"),
])
def test_bad_batches_are_one_clear_error(bert: torch.nn.Module, loader: object, loss_fn: object,
                                         message: str) -> None:
    optimizer = torch.optim.SGD(bert.parameters(), lr=0.01)
    before = snapshot(bert, optimizer)
    with pytest.raises(InputError) as info:
        lr_range_test(bert, loader, loss_fn, optimizer, steps=10)  # type: ignore[arg-type]
    assert str(info.value).startswith(message)
    assert_same(before, snapshot(bert, optimizer))  # restored even after a failure
