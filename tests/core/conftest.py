"""Fixtures of the core tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dldebug import CheckResult, Figure, Finding, Report, Series, Severity, Span, Table


@pytest.fixture
def full_report() -> Report:
    """A report using every field, nested sections and non-finite numbers."""
    inner = Report(
        [Finding("loss.nonfinite", Severity.ERROR, "loss became NaN", {"step": np.int64(12), "loss": math.nan},
                 fix="lower the learning rate", lesson=2)],
        title="inner",
        tables=(Table("segments", ("start", "end"), ((0, 10), (11, np.float32(20.5)))),),
        figures=(Figure("curve", title="t", series=(Series("loss", [0, 1, 2], [1.0, math.inf, 0.5], "scatter"),),
                        spans=(Span(0, 1, "plateau", Severity.WARNING),), markers=((1.5, "first NaN"),),
                        xlabel="step", ylabel="loss", logx=True, logy=True, caption="cap"),
                 Figure("cm", matrix=[[1, 2], [3, 4]])),
        checks=(CheckResult("equivariance", "passed"), CheckResult("ctc", "skipped", "no CTC loss")),
    )
    return Report(
        [Finding("loss.plateau", Severity.INFO, "plateau then fall", {"start_step": 0, "end_step": 40,
                                                                      "levels": [2.3, 0.4], "name": "loss"}),
         Finding("lr.batch_changed", "warning", "batch grew", {"neg": -math.inf})],
        title="outer", sections=(inner,), meta={"seed": 0, "torch": torch.__version__},
    )


