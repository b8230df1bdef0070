"""The Lightning and Hugging Face callbacks, driven by the real frameworks on tiny models."""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pl = pytest.importorskip("lightning.pytorch")
transformers = pytest.importorskip("transformers")

from dldebug.monitor.huggingface import MonitorCallback as HFCallback  # noqa: E402
from dldebug.monitor.lightning import MonitorCallback as PLCallback  # noqa: E402
from dldebug.monitor.lightning import batch_size_of  # noqa: E402

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
logging.getLogger("lightning.fabric").setLevel(logging.ERROR)


class TinyClassifier(pl.LightningModule):
    """A 2-layer MLP on random 4-class data; ``poison_at`` writes NaN into the first layer's weights."""

    def __init__(self, poison_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
        self.poison_at = poison_at
        self.seen: list[float] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict:
        x, y = batch
        if self.poison_at is not None and self.global_step == self.poison_at:
            with torch.no_grad():
                self.net[2].weight[0, 0] = math.nan
        logits = self.net(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.seen.append(float(loss.detach()))
        return {"loss": loss, "logits": logits.detach(), "targets": y}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(96, 8, generator=gen)
        y = x[:, :4].argmax(dim=1)  # learnable: the loss must fall
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


def fit(module: TinyClassifier, callback: PLCallback, steps: int, tmp_path: Path, **kwargs: object) -> pl.Trainer:
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[callback],
                         default_root_dir=tmp_path, **kwargs)
    trainer.fit(module)
    return trainer


def test_lightning_callback_sees_every_step(tmp_path: Path) -> None:
    module = TinyClassifier()
    callback = PLCallback(every=2)
    fit(module, callback, 60, tmp_path)
    report = callback.report
    assert report is not None and report.meta["steps_observed"] == 60
    assert list(report.figure("monitor.loss").series[0].y) == pytest.approx(module.seen)
    assert report.filter(min_severity="warning") == ()
    assert report.table("monitor.layers").column("module") == ["net.0", "net.2"]


def test_lightning_callback_names_the_poisoned_layer(tmp_path: Path) -> None:
    module = TinyClassifier(poison_at=5)
    callback = PLCallback(every=4)
    fit(module, callback, 8, tmp_path)
    report = callback.report
    assert report is not None
    assert report.get("loss.nonfinite").evidence["step"] == 5  # type: ignore[union-attr]
    culprit = report.get("monitor.nonfinite_module")
    assert culprit is not None and culprit.evidence["module"] == "net.2" and culprit.evidence["step"] == 5


def test_lightning_callback_state_goes_into_the_checkpoint(tmp_path: Path) -> None:
    callback = PLCallback(every=2)
    trainer = fit(TinyClassifier(), callback, 6, tmp_path)
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)["callbacks"]
    state = next(v for k, v in saved.items() if "MonitorCallback" in k)
    assert state["next_step"] == 6
    resumed = PLCallback(every=2)
    trainer2 = pl.Trainer(max_steps=9, accelerator="cpu", logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False, callbacks=[resumed],
                          default_root_dir=tmp_path)
    trainer2.fit(TinyClassifier(), ckpt_path=path)
    assert resumed.report is not None and resumed.report.meta["steps_observed"] == 9


def test_batch_size_of_nested_batches() -> None:
    x = torch.zeros(5, 3)
    assert [batch_size_of(b) for b in (x, (x, x), {"input_ids": x}, [torch.tensor(1.0), x], "text")] == [
        5, 5, 5, 5, None]


def tiny_bert() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=3)
    return transformers.BertForSequenceClassification(config)


class TokenData(torch.utils.data.Dataset):
    def __init__(self, n: int = 48) -> None:
        gen = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 40, (n, 12), generator=gen)
        self.labels = self.ids[:, 0] % 3

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


class PoisonAt(transformers.TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        if state.global_step == self.step:
            with torch.no_grad():
                model.classifier.weight[0, 0] = math.nan


def hf_train(tmp_path: Path, callbacks: list, steps: int = 8, accumulation: int = 1) -> transformers.Trainer:
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=4, learning_rate=1e-3,
        gradient_accumulation_steps=accumulation, logging_steps=1, save_strategy="no", report_to=[],
        use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
    )
    trainer = transformers.Trainer(model=tiny_bert(), args=args, train_dataset=TokenData(), callbacks=callbacks)
    trainer.train()
    return trainer


@pytest.mark.parametrize("accumulation", [1, 2])
def test_huggingface_callback_matches_the_trainer_log(tmp_path: Path, accumulation: int) -> None:
    callback = HFCallback(every=2)
    trainer = hf_train(tmp_path, [callback], accumulation=accumulation)
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    report = callback.report
    assert report is not None and report.meta["steps_observed"] == 8
    # This Trainer logs the micro-batch losses of a step summed (x accumulation), rounded to 4 digits;
    # the monitor keeps their mean (ln 3 = 1.0986 for 3 balanced classes at the start).
    means = [value / accumulation for value in logged]
    assert list(report.figure("monitor.loss").series[0].y) == pytest.approx(means, abs=6e-4)
    assert not report.has("monitor.") and not report.has("loss.nonfinite")  # 8 steps: too few to fall
    assert callback.monitor is not None and callback.monitor.batch["size"] == 4 * accumulation
    buffer = io.BytesIO()
    torch.save(callback.monitor.state_dict(), buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True)["next_step"] == 8


def test_huggingface_callback_names_the_poisoned_layer(tmp_path: Path) -> None:
    callback = HFCallback(every=4)
    hf_train(tmp_path, [PoisonAt(3), callback])
    report = callback.report
    assert report is not None
    assert report.get("loss.nonfinite").evidence["step"] == 3  # type: ignore[union-attr]
    culprit = report.get("monitor.nonfinite_module")
    assert culprit is not None and culprit.evidence["module"] == "classifier"


@pytest.mark.parametrize("restore_flag", [False, True])  # False is Hugging Face's default
def test_huggingface_callback_state_survives_a_resume(tmp_path: Path, restore_flag: bool) -> None:
    def args(steps: int) -> transformers.TrainingArguments:
        return transformers.TrainingArguments(
            output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=4, learning_rate=1e-3,
            save_strategy="steps", save_steps=4, report_to=[], use_cpu=True, disable_tqdm=True,
            restore_callback_states_from_checkpoint=restore_flag, logging_steps=100)

    first = HFCallback(every=2)
    transformers.Trainer(model=tiny_bert(), args=args(4), train_dataset=TokenData(), callbacks=[first]).train()
    assert (tmp_path / "checkpoint-4" / "dldebug_monitor.json").is_file()
    resumed = HFCallback(every=2)
    trainer = transformers.Trainer(model=tiny_bert(), args=args(8), train_dataset=TokenData(), callbacks=[resumed])
    trainer.train(resume_from_checkpoint=True)
    assert resumed in trainer.callback_handler.callbacks  # the object the user holds is the one that ran
    assert resumed.resumed_from == tmp_path / "checkpoint-4" / "dldebug_monitor.json"
    assert resumed.report is not None and resumed.report.meta["steps_observed"] == 8  # 4 restored + 4 new
    assert resumed.monitor is not None and resumed.monitor.losses.steps == list(range(8))
    assert resumed.report.figure("monitor.loss").series[0].x[:4] == tuple(first.monitor.losses.steps)


class LMData(torch.utils.data.Dataset):
    def __init__(self, n: int = 32) -> None:
        self.ids = torch.randint(0, 40, (n, 10), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def test_huggingface_callback_on_a_causal_language_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    callback = HFCallback(every=1)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=4, learning_rate=1e-3,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True)
    trainer = transformers.Trainer(model=transformers.GPT2LMHeadModel(config), args=args, train_dataset=LMData(),
                                   callbacks=[callback])
    trainer.train()
    report = callback.report
    assert report is not None and not report.has("monitor.internal_error")
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert list(report.figure("monitor.loss").series[0].y) == pytest.approx(logged, abs=6e-4)
    # (batch, positions, vocabulary) logits are judged row by row; shifted LM labels are not used.
    assert len(callback.monitor.logits) == 6  # type: ignore[union-attr]
    assert all(np.isnan(row[-1]) for row in callback.monitor.logits.rows)  # type: ignore[union-attr]
