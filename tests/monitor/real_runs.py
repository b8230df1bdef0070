"""Real, tiny, seeded Lightning and Hugging Face Trainer runs shared by the curve and monitor tests.

The Lightning runs train the digits CNN (sklearn's 8x8 digits, CPU) the way the issue-14 report
did: SGD with momentum 0.9 at lr 20 or 1000, plain SGD at lr 100, or healthy settings. The Hugging
Face runs train the tiny BERT classifier and GPT-2 LM of ``dldebug.demo.tiny_hf`` on seeded token
data. Loaded by path from conftest files (``load_real_runs``); it is not a test module.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dldebug.demo.digits import DigitsCNN, load_digits_data

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
logging.getLogger("lightning.fabric").setLevel(logging.ERROR)

_DIGITS: Any = None


def digits() -> Any:
    global _DIGITS
    if _DIGITS is None:
        _DIGITS = load_digits_data()
    return _DIGITS


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """The lr multiplier of a linear warm-up over ``warmup`` steps, then a cosine decay to 0 at ``total``."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return factor


def zero_between(first: int, last: int) -> Callable[[int], float]:
    """The lr multiplier that is 0 from step ``first`` to ``last`` (inclusive), else 1."""
    return lambda step: 0.0 if first <= step <= last else 1.0


def lightning_module(*, lr: float, optimizer: str = "sgd", momentum: float = 0.9,
                     schedule: Callable[[int], float] | None = None, seed: int = 0, nan_at: int | None = None,
                     nan_rank: int | None = None, raise_at: int | None = None) -> Any:
    """A LightningModule training the digits CNN; it logs ``train_loss`` every step.

    ``nan_at`` feeds a NaN input at that step (on ``nan_rank`` only, if given); ``raise_at`` raises
    a RuntimeError there (on ``nan_rank`` only, if given).
    """
    import lightning.pytorch as pl

    class DigitsModule(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.net = DigitsCNN()

        def _here(self) -> bool:
            return nan_rank is None or self.global_rank == nan_rank

        def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
            x, y = batch
            if raise_at is not None and self.global_step == raise_at and self._here():
                raise RuntimeError(f"injected failure at step {raise_at}")
            if nan_at is not None and self.global_step == nan_at and self._here():
                x = x.clone()
                x[0, 0, 0, 0] = float("nan")
            logits = self.net(x)
            loss = nn.functional.cross_entropy(logits, y)
            self.log("train_loss", loss, on_step=True, on_epoch=False)
            return {"loss": loss, "logits": logits.detach(), "targets": y}

        def configure_optimizers(self) -> Any:
            params = self.parameters()
            opt = (torch.optim.SGD(params, lr=lr, momentum=momentum) if optimizer == "sgd"
                   else torch.optim.Adam(params, lr=lr))
            if schedule is None:
                return opt
            sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

        def train_dataloader(self) -> torch.utils.data.DataLoader:
            data = digits()
            dataset = torch.utils.data.TensorDataset(data.x_train, data.y_train)
            return torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True,
                                               generator=torch.Generator().manual_seed(seed))

    return DigitsModule()


def fit_lightning(module: Any, root: Path, *, steps: int, callbacks: Sequence[Any] = (), loggers: Any = False,
                  **trainer_kwargs: Any) -> Any:
    """``Trainer.fit`` on the CPU for ``steps`` optimiser steps, quietly; returns the trainer."""
    import lightning.pytorch as pl

    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=trainer_kwargs.pop("devices", 1),
                         logger=loggers, enable_checkpointing=trainer_kwargs.pop("enable_checkpointing", False),
                         enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks),
                         default_root_dir=root, log_every_n_steps=1, deterministic=True, **trainer_kwargs)
    trainer.fit(module)
    return trainer


class TokenData(torch.utils.data.Dataset):
    """Seeded token sequences: class labels (``task="classify"``) or the tokens themselves (``"lm"``)."""

    def __init__(self, n: int = 64, *, task: str = "classify", num_labels: int = 2, vocab: int = 100,
                 length: int = 12) -> None:
        gen = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, vocab, (n, length), generator=gen)
        self.labels = self.ids[:, 0] % num_labels if task == "classify" else self.ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def hf_args(out: Path, *, steps: int, lr: float, **kwargs: Any) -> Any:
    """TrainingArguments for a quiet CPU run that logs every step and saves nothing unless asked."""
    import transformers

    defaults: dict[str, Any] = dict(output_dir=str(out), max_steps=steps, per_device_train_batch_size=8,
                                    learning_rate=lr, logging_steps=1, save_strategy="no", report_to=[],
                                    use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, seed=0)
    defaults.update(kwargs)
    return transformers.TrainingArguments(**defaults)


def hf_train(model: nn.Module, data: torch.utils.data.Dataset, args: Any, callbacks: Sequence[Any] = (),
             resume: bool | str | None = None) -> Any:
    """``Trainer.train`` on ``data``; returns the trainer."""
    import transformers

    trainer = transformers.Trainer(model=model.train(), args=args, train_dataset=data, callbacks=list(callbacks))
    trainer.train(resume_from_checkpoint=resume)
    return trainer
