"""What every demo scenario receives: the digits data and a trained baseline, built once."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dldebug.demo.digits import DigitsCNN, DigitsData, TrainHistory, load_digits_data, train_digits


@dataclass
class DemoContext:
    """Shared state of one ``dldebug demo`` run.

    Scenarios call :meth:`baseline` for the healthy digits CNN (trained once,
    then shared) and must not modify it: copy it first.
    """

    out_dir: Path
    seed: int = 0
    quick: bool = False
    data: DigitsData = field(default_factory=load_digits_data)
    timings: dict[str, float] = field(default_factory=dict)
    _baseline: tuple[DigitsCNN, TrainHistory] | None = None

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
