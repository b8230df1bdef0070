"""Issue 14: how the callbacks end a run (summary, report files), HF gradient norms, structured outputs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from dldebug import Report, TrainingMonitor

pl = pytest.importorskip("lightning.pytorch")
transformers = pytest.importorskip("transformers")

from dldebug.monitor.huggingface import MonitorCallback as HFCallback  # noqa: E402
from dldebug.monitor.lightning import MonitorCallback as PLCallback  # noqa: E402


def test_lightning_ends_with_a_summary_and_writes_the_report(tmp_path: Path, real_runs,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    callback = PLCallback(every=5, report_dir=tmp_path / "report")
    with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
        real_runs.fit_lightning(real_runs.lightning_module(lr=20.0), tmp_path, steps=60, callbacks=[callback])
    summaries = [r for r in caplog.records if r.name == "lightning.pytorch.callbacks.dldebug"]
    assert len(summaries) == 1 and summaries[0].levelno == logging.WARNING
    message = summaries[0].getMessage()
    assert message.startswith("dldebug: ") and " problem(s) found in 60 steps:\n" in message
    assert "[error] loss.blowup: loss blew up at step 1" in message
    assert str(tmp_path / "report" / "report.html") in message
    saved = Report.from_json((tmp_path / "report" / "report.json").read_text())
    assert saved == callback.report and saved.has("loss.blowup")
    assert "loss.blowup" in (tmp_path / "report" / "report.html").read_text()
    assert "Training monitor" in repr(callback.report)


def test_lightning_healthy_summary_says_no_problem(tmp_path: Path, real_runs,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    callback = PLCallback(every=5)
    with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
        real_runs.fit_lightning(real_runs.lightning_module(lr=3e-3, optimizer="adam"), tmp_path, steps=40,
                                callbacks=[callback])
    messages = [r.getMessage() for r in caplog.records if r.name == "lightning.pytorch.callbacks.dldebug"]
    assert messages == ["dldebug: no problem found in 40 steps."]
    assert not list(tmp_path.glob("**/report.html"))  # no report_dir: nothing written


def hf_bert_run(tmp_path: Path, real_runs, callback: HFCallback, **kwargs: object) -> transformers.Trainer:
    from dldebug.demo.tiny_hf import tiny_bert_classifier

    args = real_runs.hf_args(tmp_path, steps=kwargs.pop("steps", 12), lr=kwargs.pop("lr", 1e-3), **kwargs)
    return real_runs.hf_train(tiny_bert_classifier(num_labels=2), real_runs.TokenData(), args, [callback])


class GradientOracle(transformers.TrainerCallback):
    """Records the classifier's gradient norm at each optimiser step, the way the monitor should see it."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        grads = [p.grad for p in model.classifier.parameters()]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))


def test_huggingface_measures_gradient_norms_before_they_are_zeroed(tmp_path: Path, real_runs) -> None:
    from dldebug.demo.tiny_hf import tiny_bert_classifier

    oracle, callback = GradientOracle(), HFCallback(every=1, layer_stats=True)
    args = real_runs.hf_args(tmp_path, steps=12, lr=1e-3)
    trainer = real_runs.hf_train(tiny_bert_classifier(num_labels=2), real_runs.TokenData(), args, [oracle, callback])
    table = callback.report.table("monitor.layers")  # type: ignore[union-attr]
    norms = dict(zip(table.column("module"), table.column("gradient norm"), strict=True))
    assert norms["classifier"] == pytest.approx(oracle.norms[-1], rel=1e-5)  # the last step's, as it was
    assert sum(v is not None and v > 0 for v in norms.values()) >= 10  # every layer that trains has one
    assert all(p.grad is None or not p.grad.any() for p in trainer.model.parameters())  # zeroed after the step


def test_huggingface_summary_and_report_dir(tmp_path: Path, real_runs, caplog: pytest.LogCaptureFixture) -> None:
    callback = HFCallback(every=2, report_dir=tmp_path / "out")
    with caplog.at_level(logging.INFO, logger="transformers.trainer.dldebug"):
        hf_bert_run(tmp_path, real_runs, callback, steps=40, lr=10.0)
    messages = [r.getMessage() for r in caplog.records if r.name == "transformers.trainer.dldebug"]
    assert len(messages) == 1 and "[error] loss.blowup" in messages[0]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["title"] == "Training monitor"
    assert callback.report is not None and callback.report.has("loss.blowup")


def test_huggingface_resume_without_a_saved_state_says_so(tmp_path: Path, real_runs,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    hf_bert_run(tmp_path, real_runs, HFCallback(every=2), steps=4, save_strategy="steps", save_steps=4)
    (tmp_path / "checkpoint-4" / "dldebug_monitor.json").unlink()  # e.g. a checkpoint from before dldebug
    callback = HFCallback(every=2)
    with caplog.at_level(logging.WARNING, logger="transformers.trainer.dldebug"):
        from dldebug.demo.tiny_hf import tiny_bert_classifier

        args = real_runs.hf_args(tmp_path, steps=8, lr=1e-3, save_strategy="steps", save_steps=4)
        real_runs.hf_train(tiny_bert_classifier(num_labels=2), real_runs.TokenData(), args, [callback], resume=True)
    assert any("no monitor state could be read" in r.getMessage() for r in caplog.records)
    assert callback.report is not None and callback.report.meta["steps_observed"] == 4


@pytest.mark.parametrize("given", ["model_output", "dict", "tuple"])
def test_observe_reads_structured_outputs_through_model_io(given: str) -> None:
    from transformers.modeling_outputs import SequenceClassifierOutput

    torch.manual_seed(0)
    logits = 20 * torch.eye(4)[torch.arange(64) % 4]  # over-confident on purpose
    targets = torch.arange(64) % 4
    plain, structured = TrainingMonitor(every=1), TrainingMonitor(every=1, output=1 if given == "tuple" else None)
    for step in range(60):
        loss = torch.tensor(1e-3 * 0.9 ** step + 1e-6)
        plain.observe(loss, logits=logits, targets=targets)
        out = {"model_output": SequenceClassifierOutput(loss=loss, logits=logits),
               "dict": {"loss": loss, "logits": logits}, "tuple": (loss, logits)}[given]
        structured.observe(out, targets=targets)
    assert structured.logits.rows == plain.logits.rows and structured.losses.rows == plain.losses.rows
    assert not structured.report().has("monitor.internal_error")


def test_observe_selects_logits_with_output_spec() -> None:
    monitor = TrainingMonitor(every=1, output="scores")
    monitor.observe(1.0, logits={"hidden": torch.zeros(2, 8), "scores": torch.tensor([[3.0, 1.0], [0.0, 2.0]])})
    assert monitor.logits.rows[0][1] == pytest.approx(2.5)  # mean top logit of the 'scores' tensor
    bad = TrainingMonitor(every=1, output="nope")
    bad.observe(1.0, logits={"scores": torch.zeros(2, 2)})
    error = bad.report().get("monitor.internal_error")
    assert error is not None and "output='nope' is not in the model's output" in error.evidence["first_error"]

