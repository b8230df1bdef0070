"""Issue 17: a model with the monitor attached behaves exactly as without it, outside ``observe`` too.

Each user-side operation -- ``torch.save(model)`` (a whole-module pickle, as pytorch/examples'
word-language model does), ``copy.deepcopy``, ``torch.compile``, DDP wrapping, ``model.to(...)``,
``state_dict()`` round trips -- runs on a model with a TrainingMonitor attached and on the same
model without one; the results are compared. The monitor installs nothing on the model (a
process-wide hook watches the modules by identity), so the pickled module holds nothing of it.
"""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from dldebug import TrainingMonitor

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from rnn_model import RNNModel  # noqa: E402


def word_language_model(seed: int = 0) -> RNNModel:
    torch.manual_seed(seed)
    return RNNModel(ntoken=50, ninp=16, nhid=16, nlayers=2)


def train_word_language_model(model: RNNModel, monitor: TrainingMonitor | None, steps: int = 12,
                              checkpoint: Path | None = None) -> list[float]:
    """pytorch/examples' loop, trimmed: repackaged hidden state, clipping, a manual SGD update, torch.save(model)."""
    gen = torch.Generator().manual_seed(1)
    data = torch.randint(0, 50, (steps * 8 + 1, 4), generator=gen)
    torch.manual_seed(3)  # dropout draws the same masks in both runs
    criterion = nn.NLLLoss()
    hidden = model.init_hidden(4)
    losses = []
    model.train()
    for step in range(steps):
        source, target = data[step * 8:(step + 1) * 8], data[step * 8 + 1:(step + 1) * 8 + 1].reshape(-1)
        hidden = tuple(h.detach() for h in hidden)
        model.zero_grad()
        output, hidden = model(source, hidden)
        loss = criterion(output, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-20.0)
        if monitor is not None:
            monitor.observe(loss, logits=output.detach(), targets=target, lr=20.0)
        if checkpoint is not None and step == steps // 2:
            with checkpoint.open("wb") as f:
                torch.save(model, f)  # the whole module, hooks and all
        losses.append(loss.item())
    return losses


def pickled(model: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(model, buffer)
    return buffer.getvalue()


def same_module(a: nn.Module, b: nn.Module) -> bool:
    """The same structure, attributes, hooks and tensors (pickled bytes differ by an id and string memos)."""
    pairs = list(zip(a.modules(), b.modules(), strict=True))
    return (repr(a) == repr(b)
            and all(sorted(vars(x)) == sorted(vars(y)) for x, y in pairs)
            and all(len(getattr(x, h)) == len(getattr(y, h)) for x, y in pairs
                    for h in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_state_dict_hooks"))
            and all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)))


def reloaded(data: bytes) -> nn.Module:
    return torch.load(io.BytesIO(data), weights_only=False)


def test_whole_module_pickle_is_unchanged_by_the_monitor(tmp_path: Path) -> None:
    without, with_monitor = word_language_model(), word_language_model()
    monitor = TrainingMonitor(with_monitor, every=2)
    plain_losses = train_word_language_model(without, None, checkpoint=tmp_path / "plain.pt")
    losses = train_word_language_model(with_monitor, monitor, checkpoint=tmp_path / "monitored.pt")
    assert losses == plain_losses  # the monitor changes no number of the run
    checkpoint = torch.load(tmp_path / "monitored.pt", weights_only=False)
    assert same_module(checkpoint, torch.load(tmp_path / "plain.pt", weights_only=False))
    assert same_module(reloaded(pickled(with_monitor)), reloaded(pickled(without)))
    assert sum(len(m._forward_hooks) for m in checkpoint.modules()) == 0
    assert monitor.report().meta["steps_observed"] == 12 and not monitor.report().has("monitor.internal_error")


def test_pickled_module_loads_in_a_process_without_dldebug(tmp_path: Path) -> None:
    model = word_language_model()
    monitor = TrainingMonitor(model, every=1)
    train_word_language_model(model, monitor, checkpoint=tmp_path / "model.pt")
    tokens = torch.arange(12).reshape(3, 4) % 50
    script = f"""
import json, sys
sys.path.insert(0, {str(HERE)!r})
import torch
model = torch.load({str(tmp_path / "model.pt")!r}, weights_only=False).eval()
with torch.no_grad():
    out, _ = model(torch.arange(12).reshape(3, 4) % 50, model.init_hidden(4))
hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())
print(json.dumps({{"dldebug_loaded": any(k.startswith("dldebug") for k in sys.modules), "hooks": hooks,
                  "out": out[:2, :5].tolist()}}))
"""
    env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": "1"}  # dldebug is not even importable there
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120,
                            cwd=tmp_path, check=True)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    reference = torch.load(tmp_path / "model.pt", weights_only=False).eval()
    with torch.no_grad():
        expected, _ = reference(tokens, reference.init_hidden(4))
    assert loaded["dldebug_loaded"] is False and loaded["hooks"] == 0
    assert torch.allclose(torch.tensor(loaded["out"]), expected[:2, :5], atol=1e-6)


def test_deepcopy_is_an_unwatched_twin() -> None:
    model = word_language_model()
    monitor = TrainingMonitor(model, every=1)
    twin = copy.deepcopy(model)
    assert same_module(twin, model)
    train_word_language_model(twin, None, steps=3)  # the copy trains on its own ...
    assert monitor.probe is not None and monitor.probe.outputs_seen == 0  # ... unseen by the monitor
    losses = train_word_language_model(model, monitor, steps=3)
    assert monitor.probe.outputs_seen > 0 and monitor.losses.column("loss") == losses


def test_state_dict_round_trip_and_to(tmp_path: Path) -> None:
    model, plain = word_language_model(), word_language_model()
    monitor = TrainingMonitor(model, every=1)
    assert list(model.state_dict()) == list(plain.state_dict())
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    fresh = word_language_model(seed=5)
    assert fresh.load_state_dict(torch.load(tmp_path / "sd.pt", weights_only=True), strict=True)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), plain.state_dict().values(),
                                                  strict=True))
    model.to(torch.float64).to(torch.float32)  # the same module objects: still watched
    plain.to(torch.float64).to(torch.float32)
    assert train_word_language_model(model, monitor, steps=3) == train_word_language_model(plain, None, steps=3)
    assert monitor.probe is not None and monitor.probe.outputs_seen > 0


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def sgd_steps(model: nn.Module, monitor: TrainingMonitor | None, steps: int = 6,
              run: nn.Module | None = None) -> list[float]:
    gen = torch.Generator().manual_seed(2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(steps):
        x = torch.randn(8, 6, generator=gen)
        y = (x[:, 0] > 0).long()
        logits = (run or model)(x)
        loss = nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if monitor is not None:
            monitor.observe(loss, logits=logits, targets=y)
        losses.append(loss.item())
    return losses


def test_torch_compile_with_the_monitor_attached() -> None:
    torch._dynamo.reset()
    plain, watched = mlp(), mlp()
    monitor = TrainingMonitor(watched, every=1)
    expected = sgd_steps(plain, None, run=torch.compile(plain, backend="aot_eager"))
    losses = sgd_steps(watched, monitor, run=torch.compile(watched, backend="aot_eager"))
    assert losses == pytest.approx(expected, abs=1e-6)
    report = monitor.report()
    assert report.meta["steps_observed"] == 6 and not report.has("monitor.internal_error")


def test_ddp_wrapping_with_the_monitor_attached(tmp_path: Path) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        plain, watched = mlp(), mlp()
        monitor = TrainingMonitor(watched, every=1)
        expected = sgd_steps(plain, None, run=nn.parallel.DistributedDataParallel(plain))
        wrapped = nn.parallel.DistributedDataParallel(watched)
        assert sgd_steps(watched, monitor, run=wrapped) == expected
        assert list(wrapped.state_dict()) == [f"module.{k}" for k in plain.state_dict()]
        assert monitor.probe is not None and monitor.probe.outputs_seen > 0
        assert not monitor.report().has("monitor.")
    finally:
        dist.destroy_process_group()


def test_hugging_face_model_with_the_monitor_attached() -> None:
    pytest.importorskip("transformers")
    from dldebug.demo.tiny_hf import tiny_gpt2_lm, token_batch

    model, plain = tiny_gpt2_lm().train(), tiny_gpt2_lm().train()
    monitor = TrainingMonitor(model, every=1)
    batch = token_batch(num_labels=None)
    out = model(input_ids=batch["input_ids"], labels=batch["input_ids"])
    monitor.observe(out)  # the ModelOutput itself: loss and logits read through dldebug.model_io
    assert same_module(reloaded(pickled(model)), reloaded(pickled(plain)))
    twin = copy.deepcopy(model)
    assert twin.lm_head.weight is twin.transformer.wte.weight  # ties survive, as without the monitor
    assert len(monitor.logits) == 1 and not monitor.report().has("monitor.internal_error")
