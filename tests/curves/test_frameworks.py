"""`dldebug curve` on logs written by real Lightning and Hugging Face Trainer runs (issue 14)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dldebug.curves import diagnose_log, read_log

pl = pytest.importorskip("lightning.pytorch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tensorboard")


def serious(report) -> list[str]:
    return [f.check for f in report.filter(min_severity="warning")]


@pytest.fixture(scope="module")
def lightning_logs(tmp_path_factory: pytest.TempPathFactory, real_runs) -> Path:
    """logs/csv and logs/tb, each with version_0 (healthy Adam) and version_1 (lr = 0), 60 steps each."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("lightning") / "logs"
    for optimizer, lr in (("adam", 3e-3), ("sgd", 0.0)):
        loggers = [CSVLogger(str(root), name="csv"), TensorBoardLogger(str(root), name="tb")]
        real_runs.fit_lightning(real_runs.lightning_module(lr=lr, optimizer=optimizer), root, steps=60,
                                loggers=loggers)
    return root


@pytest.mark.parametrize("folder", ["csv", "tb"])
def test_two_lightning_runs_are_judged_each_in_its_section(lightning_logs: Path, folder: str) -> None:
    report = diagnose_log(lightning_logs / folder)
    assert report.meta["runs"] == ["version_0", "version_1"]
    healthy, zero = report.sections
    assert serious(healthy) == [] and healthy.title.endswith("(version_0)")
    assert serious(zero) == ["loss.stuck"] and zero.title.endswith("(version_1)")


def test_a_parent_folder_of_two_loggers_holds_four_runs(lightning_logs: Path) -> None:
    report = diagnose_log(lightning_logs)
    assert report.meta["runs"] == ["csv/version_0", "csv/version_1", "tb/version_0", "tb/version_1"]
    assert [serious(s) for s in report.sections] == [[], ["loss.stuck"], [], ["loss.stuck"]]


def test_cli_on_a_folder_of_runs(lightning_logs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dldebug.cli.app import main

    assert main(["curve", str(lightning_logs / "csv"), "--fail-on", "error"]) == 1  # version_1 is stuck
    out = capsys.readouterr().out
    assert "version_0" in out and "version_1" in out
    assert main(["curve", str(lightning_logs / "csv" / "version_0"), "--metric", "epoch"]) == 2
    assert "step/epoch/index column, not a metric" in capsys.readouterr().err.replace("\n", " ")
    assert "epoch" not in read_log(lightning_logs / "csv" / "version_0").metrics


@pytest.fixture(scope="module")
def high_lr_logs(tmp_path_factory: pytest.TempPathFactory, real_runs) -> SimpleNamespace:
    """Lightning CSV logs of the issue's too-high learning rates (110 steps, 5 epochs of digits)."""
    from lightning.pytorch.loggers import CSVLogger

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("high_lr")
    runs = {"sgd_momentum_lr20": dict(lr=20.0), "sgd_momentum_lr1000": dict(lr=1000.0),
            "sgd_lr100": dict(lr=100.0, momentum=0.0), "adam_1e-3": dict(lr=1e-3, optimizer="adam")}
    for name, kwargs in runs.items():
        real_runs.fit_lightning(real_runs.lightning_module(**kwargs), root / name, steps=110,
                                loggers=CSVLogger(str(root / name), name="csv"))
    return SimpleNamespace(root=root, names=list(runs))


@pytest.mark.parametrize("name", ["sgd_momentum_lr20", "sgd_momentum_lr1000", "sgd_lr100"])
def test_lightning_high_learning_rates_are_an_error(high_lr_logs: SimpleNamespace, name: str) -> None:
    report = diagnose_log(high_lr_logs.root / name / "csv")
    found = serious(report)
    assert found and set(found) <= {"loss.blowup", "loss.nonfinite"}, report.findings
    if name == "sgd_momentum_lr20":  # the run stays finite: the early blow-up is the finding
        blowup = report.get("loss.blowup")
        assert blowup is not None and blowup.severity.value == "error" and blowup.lesson == 11
        log = read_log(high_lr_logs.root / name / "csv").curve()
        assert blowup.evidence["start_level"] == pytest.approx(log.values[0])  # the level before the jump
        assert blowup.evidence["peak_level"] == pytest.approx(max(log.values))
        assert blowup.evidence["settled_factor"] > 1.5 and "Nothing is broken" not in (blowup.fix or "")
    assert not report.has("loss.plateau")


def test_lightning_healthy_run_is_silent(high_lr_logs: SimpleNamespace) -> None:
    assert serious(diagnose_log(high_lr_logs.root / "adam_1e-3" / "csv")) == []


@pytest.fixture(scope="module")
def hf_logs(tmp_path_factory: pytest.TempPathFactory, real_runs) -> Path:
    """trainer_state.json of tiny BERT / GPT-2 runs at lr 10 (the issue's runs) and at sane rates."""
    from dldebug.demo.tiny_hf import tiny_bert_classifier, tiny_gpt2_lm

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("hf")
    runs = {"bert_lr10": (tiny_bert_classifier, "classify", 10.0), "gpt2_lr10": (tiny_gpt2_lm, "lm", 10.0),
            "bert_lr1e-3": (tiny_bert_classifier, "classify", 1e-3), "gpt2_lr5e-3": (tiny_gpt2_lm, "lm", 5e-3)}
    for name, (build, task, lr) in runs.items():
        model = build(num_labels=2) if task == "classify" else build()
        trainer = real_runs.hf_train(model, real_runs.TokenData(task=task), real_runs.hf_args(root / name, steps=60,
                                                                                               lr=lr))
        trainer.save_state()
    return root


@pytest.mark.parametrize("name", ["bert_lr10", "gpt2_lr10"])
def test_hugging_face_lr10_blows_up(hf_logs: Path, name: str) -> None:
    report = diagnose_log(hf_logs / name)
    assert serious(report) == ["loss.blowup"]
    blowup = report.get("loss.blowup")
    assert blowup.evidence["jump_step"] <= 3 and blowup.evidence["settled_factor"] > 5
    assert "never recovered" in blowup.message


def test_hugging_face_sane_rates_raise_no_warning(hf_logs: Path) -> None:
    for name in ("bert_lr1e-3", "gpt2_lr5e-3"):
        assert serious(diagnose_log(hf_logs / name)) == [], name


def test_hugging_face_nan_filter_on_a_real_run(tmp_path: Path, real_runs) -> None:
    from dldebug.demo.tiny_hf import tiny_bert_classifier

    class PoisonAt(transformers.TrainerCallback):  # NaN weights from step 6 on: every later loss is NaN
        def on_step_begin(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
            if state.global_step == 6:
                with torch.no_grad():
                    model.classifier.weight[0, 0] = math.nan

    args = real_runs.hf_args(tmp_path, steps=20, lr=1e-3, save_strategy="steps", save_steps=20)
    trainer = real_runs.hf_train(tiny_bert_classifier(num_labels=2), real_runs.TokenData(), args, [PoisonAt()])
    logged = [(e["loss"], e["grad_norm"]) for e in trainer.state.log_history if "loss" in e]
    assert logged[6][0] == 0.0 and math.isnan(logged[6][1])  # what the filter wrote: the oracle
    report = diagnose_log(tmp_path)  # finds checkpoint-20/trainer_state.json
    nonfinite = report.get("loss.nonfinite")
    assert nonfinite is not None and nonfinite.evidence["first_step"] == 7
    assert nonfinite.evidence["hidden_by_nan_filter"] == 14 and "NaN filter" in nonfinite.message
    assert not report.has("loss.stuck")
