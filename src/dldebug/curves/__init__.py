"""Loss and metric curve analysis (pure numpy/scipy) and readers for training logs.

``diagnose_curve`` judges a series of values; ``read_log`` reads CSV, JSON
lines, TensorBoard event files, Lightning ``metrics.csv`` and Hugging Face
``trainer_state.json``; ``diagnose_log`` does both.
"""

from __future__ import annotations

from dldebug.curves.analysis import diagnose_curve
from dldebug.curves.logs import detect_format, diagnose_log, read_log
from dldebug.curves.records import Curve, CurveLog, Damage, LogFormat, guess_mode, pick_loss_metric

__all__ = [
    "Curve",
    "CurveLog",
    "Damage",
    "LogFormat",
    "detect_format",
    "diagnose_curve",
    "diagnose_log",
    "guess_mode",
    "pick_loss_metric",
    "read_log",
]
