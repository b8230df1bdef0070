"""Checkpoint/resume, bounded memory, and the pure decisions (logits, batch size, rank merging)."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

from dldebug import InputError, TrainingMonitor
from dldebug.lr import scale_lr
from dldebug.monitor.distributed import merge_rank_findings
from dldebug.monitor.signals import judge_batch_change, judge_overconfidence, logit_statistics


def curve(n: int, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return (2.3 * np.exp(-np.arange(n) / 300) + 0.1 + 0.03 * rng.standard_normal(n)).tolist()


def feed(monitor: TrainingMonitor, values: list[float], start: int) -> None:
    for step in range(start, len(values)):
        logits = torch.randn(8, 5, generator=torch.Generator().manual_seed(step)) * (1 + step / 100)
        batch = 32 if step < 700 else 64
        monitor.observe(torch.tensor(values[step]), logits=logits, targets=torch.zeros(8, dtype=torch.long),
                        batch_size=batch, lr=0.1)


def test_state_survives_a_weights_only_checkpoint() -> None:
    values = curve(1200)
    straight = TrainingMonitor(every=10, capacity=256)
    feed(straight, values, 0)
    first_half = TrainingMonitor(every=10, capacity=256)
    feed(first_half, values[:600], 0)
    buffer = io.BytesIO()
    torch.save({"monitor": first_half.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["monitor"]
    resumed = TrainingMonitor(every=10, capacity=256)
    resumed.load_state_dict(state)
    feed(resumed, values, 600)
    assert resumed.report() == straight.report()
    assert resumed.report().has("lr.batch_changed")  # the batch doubled after the resume point


def test_loading_something_else_is_a_clear_error() -> None:
    with pytest.raises(InputError) as info:
        TrainingMonitor().load_state_dict({"weights": 1})
    assert str(info.value) == ("not a TrainingMonitor state (version 2); got version None. "
                               "Pass what TrainingMonitor.state_dict() returned.")


@pytest.mark.slow
def test_memory_stays_bounded_over_a_million_steps() -> None:
    monitor = TrainingMonitor(every=1000, capacity=512)
    observe = monitor.observe
    sizes = {}
    for step in range(1_000_000):
        observe(1.0 / (1 + step))
        if step + 1 in (100_000, 1_000_000):
            sizes[step + 1] = len(pickle.dumps(monitor.state_dict()))
    assert len(monitor.losses) < 512 and monitor.losses.steps[-1] > 900_000
    assert monitor.losses.steps[0] == 0  # the whole run is sampled, not only its end
    # At most `capacity` (step, value) pairs of ~25 pickled bytes each, plus fixed fields.
    assert max(sizes.values()) < 512 * 25 + 8192, sizes
    assert monitor.report().filter(min_severity="warning") == ()


def test_logit_statistics_match_numpy() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 7, generator=gen) * 3
    targets = torch.randint(0, 7, (64,), generator=gen)
    got = logit_statistics(logits, targets).tolist()
    x = logits.double().numpy()
    srt = np.sort(x, axis=1)
    top, runner = srt[:, -1], srt[:, -2]
    prob = np.exp(top - np.log(np.exp(x).sum(axis=1)))
    expected = [top.mean(), runner.mean(), ((x.sum(1) - top) / 6).mean(), (top - runner).mean(), prob.mean(),
                (x.argmax(1) == targets.numpy()).mean()]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def rows(n: int, gap_end: float, prob_end: float, loss_end: float) -> tuple[list[int], list[list[float]]]:
    t = np.linspace(0, 1, n)
    gap = 0.5 + (gap_end - 0.5) * t
    top = 2 + gap
    prob = 1 - 0.8 * ((1 - prob_end) / 0.8) ** t
    loss = 2.3 * (loss_end / 2.3) ** t
    table = np.stack([loss, top, top - gap, np.full(n, -1.0), gap, prob, np.full(n, 1.0)], axis=1)
    return list(range(0, 10 * n, 10)), table.tolist()


@pytest.mark.parametrize(("gap_end", "prob_end", "loss_end", "fires"), [
    (20.0, 0.9999, 1e-4, True),   # lesson 6: 20 against 0.2, loss ~0
    (5.0, 0.95, 0.06, False),     # a healthy classifier at the end of training
    (20.0, 0.9999, 0.5, False),   # big gap, but the loss is not pinned near zero
    (20.0, 0.99, 1e-4, False),    # softmax mass not ~1
])
def test_overconfidence_judgement(gap_end: float, prob_end: float, loss_end: float, fires: bool) -> None:
    steps, table = rows(80, gap_end, prob_end, loss_end)
    finding = judge_overconfidence(steps, table)
    assert (finding is not None) == fires
    if finding is not None:
        assert finding.lesson == 6 and finding.evidence["gap_end"] > 15 and finding.evidence["end_step"] == 790


@pytest.mark.parametrize(("old_lr", "new_lr", "fires"), [
    (0.1, 0.1, True),     # lr did not follow the batch
    (0.1, 0.2, False),    # linear rule
    (0.1, 0.1414, False),  # square-root rule
    (0.1, 0.1001, True),  # a scheduler's small drift is not a rescale
])
def test_batch_change_judgement(old_lr: float, new_lr: float, fires: bool) -> None:
    finding = judge_batch_change(500, 128, 256, old_lr, new_lr)
    assert (finding is not None) == fires
    if finding is not None:
        assert finding.evidence["suggested_lr"] == pytest.approx(scale_lr(old_lr, 128, 256, rule="linear").lr)
        assert finding.evidence["suggested_lr"] == pytest.approx(2 * old_lr)
        assert finding.lesson == 11 and finding.evidence["step"] == 500


def run_batches(sizes: list[int], lrs: list[float], **kwargs: object) -> TrainingMonitor:
    monitor = TrainingMonitor(**kwargs)  # type: ignore[arg-type]
    for size, lr in zip(sizes, lrs, strict=True):
        monitor.observe(1.0, batch_size=size, lr=lr)
    return monitor


def test_batch_change_in_a_run() -> None:
    epoch = [64] * 21 + [4]  # 1,348 samples: the last batch of each epoch is short, not a change
    monitor = run_batches(epoch * 5, [1e-3] * 110)
    assert not monitor.report().has("lr.batch_changed")
    doubled = run_batches([64] * 50 + [128] * 50, [1e-3] * 100)
    finding = doubled.report().get("lr.batch_changed")
    assert finding is not None and finding.evidence["step"] == 50
    assert finding.evidence["suggested_lr"] == pytest.approx(2e-3)
    scaled = run_batches([64] * 50 + [128] * 50, [1e-3] * 50 + [2e-3] * 50)
    assert not scaled.report().has("lr.batch_changed")


def test_batch_change_against_the_base_batch_size() -> None:
    monitor = run_batches([1024] * 20, [0.1] * 20, base_batch_size=256)
    finding = monitor.report().get("lr.batch_changed")
    assert finding is not None and finding.evidence["suggested_lr"] == pytest.approx(0.4)
    tuned = run_batches([1024] * 20, [0.4] * 20, base_batch_size=256, base_lr=0.1)
    assert not tuned.report().has("lr.batch_changed")


def test_merging_ranks_names_the_first_rank() -> None:
    nan = {"check": "loss.nonfinite", "severity": "error", "message": "the loss became nan", "evidence": {"step": 7}}
    later = dict(nan, evidence={"step": 8})
    plateau = {"check": "loss.plateau", "severity": "info", "message": "plateau",
               "evidence": {"start_step": 0, "end_step": 40}}
    merged = {f.check: f for f in merge_rank_findings([[later, plateau], [nan], [plateau]])}
    assert merged["loss.nonfinite"].evidence["rank"] == 1
    assert merged["loss.nonfinite"].evidence["ranks"] == "0,1"
    assert merged["loss.nonfinite"].message.startswith("rank 1: ")
    assert merged["loss.plateau"].evidence["ranks"] == "0,2"


def test_logit_statistics_numpy_path_matches_the_torch_path() -> None:
    from dldebug.monitor.signals import _statistics_torch

    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 40, 9, generator=gen) * 4
    targets = torch.randint(0, 9, (120,), generator=gen)
    fast = logit_statistics(logits, targets)  # CPU: the numpy path
    device_path = _statistics_torch(logits.reshape(-1, 9), targets)  # what accelerators run
    np.testing.assert_allclose(fast.numpy(), device_path.numpy(), rtol=1e-5)
    assert np.isnan(logit_statistics(logits)[5].item())  # no targets: no accuracy


def test_nonfinite_logits_give_nan_statistics_without_warnings() -> None:
    import warnings

    logits = torch.randn(8, 4)
    logits[0, 0] = float("nan")
    logits[1, 1] = float("inf")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a training loop must not be flooded with RuntimeWarnings
        stats = logit_statistics(logits, torch.zeros(8, dtype=torch.long))
    assert np.isnan(stats[0].item())
