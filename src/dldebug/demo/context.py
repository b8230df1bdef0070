"""What every demo scenario receives: the digits data and a trained baseline, built once."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dldebug.demo.digits import DigitsCNN, DigitsData, TrainHistory, load_digits_data, train_digits


@dataclass
class DemoContext:
    """Shared state of one ``dldebug demo`` run.

    Scenarios call :meth:`baseline` for the healthy digits CNN (trained once,
    then shared) and must not modify it: copy it first. A scenario with several
    parts calls :meth:`advance` after each, so its progress bar moves.
    """

    out_dir: Path
    seed: int = 0
    quick: bool = False
    data: DigitsData = field(default_factory=load_digits_data)
    timings: dict[str, float] = field(default_factory=dict)
    _baseline: tuple[DigitsCNN, TrainHistory] | None = None
    on_progress: Callable[[float], None] | None = None

    def advance(self, done: int, total: int) -> None:
        """Tell the progress bar that ``done`` of the scenario's ``total`` parts are finished."""
        if self.on_progress is not None and total > 0:
            self.on_progress(min(max(done / total, 0.0), 1.0))

    def baseline(self) -> tuple[DigitsCNN, TrainHistory]:
        """The healthy digits CNN (Adam, lr 1e-3, batch 64) and its training history."""
        if self._baseline is None:
            torch.manual_seed(self.seed)
            model = DigitsCNN()
            start = time.perf_counter()
            history = train_digits(model, self.data, epochs=4 if self.quick else 8, seed=self.seed)
            self.timings["baseline training"] = time.perf_counter() - start
            model.eval()
            self._baseline = (model, history)
        return self._baseline
