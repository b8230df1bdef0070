"""What a log reader returns: named curves, the log's format, and where it was damaged."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from dldebug.errors import InputError

__all__ = ["NON_METRICS", "Curve", "CurveBuilder", "CurveLog", "Damage", "LogFormat", "Overlap", "guess_mode",
           "is_non_metric", "pick_loss_metric", "pick_lr_metric"]

LogFormat = Literal["csv", "jsonl", "tensorboard", "lightning", "hf_trainer_state"]

#: Preferred metric names when none is asked for, best first.
_LOSS_NAMES = ("loss", "train_loss", "train/loss", "training_loss", "train_loss_step", "loss_step",
               "train/loss_step", "train_loss_epoch", "loss/train", "losses/train")
#: Columns and keys that count steps, epochs, rows or time: never metrics (pandas writes its index as ''
#: or "Unnamed: 0"; TensorBoard's CSV export has "Wall time").
NON_METRICS = frozenset({"step", "steps", "global_step", "iteration", "iter", "epoch", "epochs", "index", "", "idx",
                         "wall time", "wall_time", "walltime", "timestamp", "time_stamp"})
_UNNAMED = re.compile(r"unnamed: ?\d+", re.IGNORECASE)
_LR_NAME = re.compile(r"(^|[/_.-])(lr|learning_rate|learning-rate|learningrate)([/_.-]|$)", re.IGNORECASE)
_HIGHER_IS_BETTER = re.compile(r"(acc|accuracy|f1|auc|precision|recall|iou|map|bleu|rouge|psnr|ssim|dice|top[15]"
                               r"|reward|return|score)", re.IGNORECASE)


def is_non_metric(name: str) -> bool:
    """Whether a column/key names a step, epoch, row index or time rather than a metric."""
    lowered = name.strip().lower()
    return lowered in NON_METRICS or bool(_UNNAMED.fullmatch(lowered))


@dataclass(frozen=True)
class Overlap:
    """Steps a log holds more than once (a resumed run logs them again); the later values were kept."""

    count: int  # how many steps appeared more than once
    first_step: float
    last_step: float


@dataclass(frozen=True)
class Curve:
    """One metric read from a log: its name, the steps and the values (float64), one value per step.

    ``overlap`` says which steps the log held more than once (the later value, in reading order, won).
    """

    name: str
    steps: np.ndarray
    values: np.ndarray
    overlap: Overlap | None = None

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class Damage:
    """Where a log stopped being readable: the file, the line (or record) and what was wrong."""

    path: Path
    line: int | None
    reason: str

    def describe(self) -> str:
        where = f"{self.path}" + (f", line {self.line}" if self.line is not None else "")
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class CurveLog:
    """Every numeric metric of a log file or directory.

    Attributes:
        path: the file or directory read.
        format: how it was read (``"csv"``, ``"jsonl"``, ``"tensorboard"``, ``"lightning"``,
            ``"hf_trainer_state"``).
        curves: metric name -> Curve, in the order the log first named them.
        damage: where reading stopped when the log was damaged and ``partial=True``, else None.
    """

    path: Path
    format: LogFormat
    curves: Mapping[str, Curve]
    damage: Damage | None = None

    @property
    def metrics(self) -> list[str]:
        return list(self.curves)

    def curve(self, metric: str | None = None) -> Curve:
        """The named curve, or the loss-like one when ``metric`` is None.

        Raises:
            InputError: the metric is absent (or no loss-like metric exists); the message lists them all.
        """
        if metric is None:
            metric = pick_loss_metric(self.metrics) or (self.metrics[0] if len(self.metrics) == 1 else None)
            if metric is None:
                raise InputError(f"{self.path}: no loss-like metric found; available metrics: "
                                 f"{', '.join(self.metrics)}. Pick one with --metric NAME (metric=...).")
        if metric not in self.curves:
            kind = (" it is a step/epoch/index column, not a metric;" if is_non_metric(metric) else "")
            raise InputError(f"{self.path}: no metric named {metric!r};{kind} available metrics: "
                             f"{', '.join(self.metrics)}.")
        return self.curves[metric]

    def lr_curve(self) -> Curve | None:
        """The learning-rate curve (``learning_rate``, ``lr``, ``lr-SGD``, ...), if the log has one."""
        name = pick_lr_metric(self.metrics)
        return None if name is None else self.curves[name]


def pick_loss_metric(names: list[str]) -> str | None:
    """The most loss-like name: an exact preferred name, then a training loss, then any loss.

    Example:
        >>> pick_loss_metric(["epoch", "val_loss", "train_loss_step"])
        'train_loss_step'
        >>> pick_loss_metric(["accuracy"]) is None
        True
    """
    lowered = {n.lower(): n for n in names}
    for preferred in _LOSS_NAMES:
        if preferred in lowered:
            return lowered[preferred]
    losses = [n for n in names if "loss" in n.lower()]
    training = [n for n in losses if not re.search(r"(val|valid|eval|test)", n, re.IGNORECASE)]
    candidates = training or losses
    return candidates[0] if candidates else None


def pick_lr_metric(names: list[str]) -> str | None:
    """The learning-rate metric: a name with ``lr`` or ``learning_rate`` as a word, the first of them.

    Example:
        >>> pick_lr_metric(["loss", "lr-SGD", "epoch"])
        'lr-SGD'
        >>> pick_lr_metric(["loss", "clr_weight"]) is None
        True
    """
    return next((n for n in names if _LR_NAME.search(n)), None)


def guess_mode(name: str) -> Literal["min", "max"]:
    """``"max"`` for accuracy-like names (accuracy, f1, auc, iou, ...), else ``"min"``.

    Example:
        >>> guess_mode("val_acc"), guess_mode("train/loss")
        ('max', 'min')
    """
    if "loss" in name.lower():
        return "min"
    return "max" if _HIGHER_IS_BETTER.search(name) else "min"


@dataclass
class CurveBuilder:
    """Collects (metric, step, value) points in reading order and builds sorted curves."""

    steps: dict[str, list[float]] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, metric: str, step: float, value: float) -> None:
        if metric not in self.values:
            self.steps[metric], self.values[metric] = [], []
        self.steps[metric].append(step)
        self.values[metric].append(value)

    def __len__(self) -> int:
        return sum(len(v) for v in self.values.values())

    def build(self) -> dict[str, Curve]:
        """One curve per metric, sorted by step; a step logged more than once keeps its last value."""
        curves = {}
        for metric, values in self.values.items():
            steps = np.asarray(self.steps[metric])
            if steps.dtype.kind == "f" and np.all(steps == np.round(steps)) and np.all(np.abs(steps) < 2**53):
                steps = steps.astype(np.int64)
            array = np.asarray(values, dtype=np.float64)
            # A resumed run logs its steps again: the later record (reading order) is the one that counts.
            reversed_unique, index = np.unique(steps[::-1], return_index=True)
            last = len(steps) - 1 - index
            overlap = None
            if len(last) < len(steps):
                counts = np.bincount(np.searchsorted(reversed_unique, steps), minlength=len(reversed_unique))
                repeated = reversed_unique[counts > 1]
                overlap = Overlap(len(repeated), repeated[0].item(), repeated[-1].item())
            curves[metric] = Curve(metric, reversed_unique, array[last], overlap)
        return curves
