"""Issue 14 acceptance: real Lightning and Hugging Face Trainer runs watched by the callbacks (CPU, seeded).

Too-high learning rates (the issue's runs) must give a warning or an error; healthy runs (plain,
warm-up + cosine, three seeds) no finding at all; a learning rate of 0 mid-run a plateau with its steps.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch")
transformers = pytest.importorskip("transformers")

from dldebug.monitor.huggingface import MonitorCallback as HFCallback  # noqa: E402
from dldebug.monitor.lightning import MonitorCallback as PLCallback  # noqa: E402


def lightning_report(tmp_path: Path, real_runs, steps: int = 110, **kwargs: object):
    callback = PLCallback(every=5)
    module = real_runs.lightning_module(**kwargs)
    real_runs.fit_lightning(module, tmp_path, steps=steps, callbacks=[callback])
    assert callback.report is not None and callback.report.meta["steps_observed"] == steps
    return callback.report, callback.monitor


@pytest.mark.parametrize("kwargs", [dict(lr=20.0), dict(lr=1000.0), dict(lr=100.0, momentum=0.0)],
                         ids=["sgd_momentum_lr20", "sgd_momentum_lr1000", "sgd_lr100"])
def test_lightning_too_high_learning_rate_is_an_error(tmp_path: Path, real_runs, kwargs: dict) -> None:
    report, monitor = lightning_report(tmp_path, real_runs, **kwargs)
    errors = {f.check for f in report.filter(min_severity="error")}
    assert errors & {"loss.blowup", "loss.nonfinite"}, report.findings
    assert not report.has("loss.plateau") and not report.has("loss.stuck")
    losses = monitor.losses.column("loss")
    if all(math.isfinite(v) for v in losses):  # the run stayed finite: the early blow-up says what happened
        blowup = report.get("loss.blowup")
        assert blowup.evidence["start_level"] == pytest.approx(losses[0])  # before the jump, not after
        assert blowup.evidence["peak_level"] == pytest.approx(max(losses))
        assert blowup.evidence["jump_step"] <= 3 and "lower it" in blowup.fix


def test_lightning_lr20_stays_finite_and_is_a_blowup(tmp_path: Path, real_runs) -> None:
    report, monitor = lightning_report(tmp_path, real_runs, lr=20.0)
    assert all(math.isfinite(v) for v in monitor.losses.column("loss"))  # the oracle for the case above
    assert report.get("loss.blowup").severity.value == "error"


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kwargs", [
    dict(lr=1e-3, optimizer="adam"),
    dict(lr=3e-3, optimizer="adam", warmup_cosine=True),
    dict(lr=0.05, warmup_cosine=True),  # SGD with momentum
], ids=["adam", "adam_warmup_cosine", "sgd_warmup_cosine"])
def test_lightning_healthy_runs_are_silent(tmp_path: Path, real_runs, seed: int, kwargs: dict) -> None:
    kwargs = dict(kwargs)
    if kwargs.pop("warmup_cosine", False):
        kwargs["schedule"] = real_runs.warmup_cosine(20, 110)
    report, monitor = lightning_report(tmp_path, real_runs, seed=seed, **kwargs)
    assert report.findings == ()
    assert monitor.losses.column("loss")[-1] < 0.5  # it really learned


def test_lightning_zero_learning_rate_mid_run_is_reported_with_its_steps(tmp_path: Path, real_runs) -> None:
    report, monitor = lightning_report(tmp_path, real_runs, steps=330, lr=0.005,
                                       schedule=real_runs.zero_between(100, 219))
    plateau = report.get("loss.plateau")
    assert plateau is not None and plateau.severity.value == "warning", report.findings
    assert (plateau.evidence["start_step"], plateau.evidence["end_step"]) == (100, 219)
    assert plateau.evidence["lr_cause"] == "zero" and "learning rate was ~0 there" in plateau.message
    lrs = dict(zip(monitor.losses.steps, monitor.losses.column("lr"), strict=True))
    assert (lrs[99], lrs[100], lrs[219], lrs[220]) == (0.005, 0.0, 0.0, 0.005)  # the lr of each step, no shift


def hf_report(tmp_path: Path, real_runs, name: str, lr: float, *, seed: int = 0, **kwargs: object):
    from dldebug.demo.tiny_hf import tiny_bert_classifier, tiny_gpt2_lm

    model = tiny_bert_classifier(num_labels=2, seed=seed) if name == "bert" else tiny_gpt2_lm(seed=seed)
    data = real_runs.TokenData(task="classify" if name == "bert" else "lm")
    callback = HFCallback(every=5)
    real_runs.hf_train(model, data, real_runs.hf_args(tmp_path, steps=60, lr=lr, seed=seed, **kwargs), [callback])
    assert callback.report is not None
    return callback.report


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_huggingface_lr10_is_an_error(tmp_path: Path, real_runs, name: str) -> None:
    report = hf_report(tmp_path, real_runs, name, 10.0)
    blowup = report.get("loss.blowup")
    assert blowup is not None and blowup.severity.value == "error", report.findings
    assert blowup.evidence["settled_factor"] > 5 and "Nothing is broken" not in (blowup.fix or "")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_huggingface_warmup_cosine_is_silent(tmp_path: Path, real_runs, seed: int) -> None:
    torch.set_num_threads(1)
    report = hf_report(tmp_path, real_runs, "bert", 1e-3, seed=seed, lr_scheduler_type="cosine", warmup_steps=10)
    assert report.filter(min_severity="warning") == ()
