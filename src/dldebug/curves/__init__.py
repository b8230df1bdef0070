"""Loss and metric curve analysis (pure numpy/scipy) and readers for training logs.

``diagnose_curve`` judges a series of values; ``read_log`` reads one run's CSV,
JSON lines, TensorBoard event files, Lightning ``metrics.csv`` or Hugging Face
``trainer_state.json``; ``read_runs``/``find_runs`` list the runs of a log
folder; ``diagnose_log`` judges each run.
"""

from __future__ import annotations

from dldebug.curves.analysis import MIN_POINTS, diagnose_curve
from dldebug.curves.logs import detect_format, diagnose_log, read_log, read_runs
from dldebug.curves.records import Curve, CurveLog, Damage, LogFormat, Overlap, guess_mode, pick_loss_metric
from dldebug.curves.runs import LogRun, find_runs

__all__ = [
    "MIN_POINTS",
    "Curve",
    "CurveLog",
    "Damage",
    "LogFormat",
    "LogRun",
    "Overlap",
    "detect_format",
    "diagnose_curve",
    "diagnose_log",
    "find_runs",
    "guess_mode",
    "pick_loss_metric",
    "read_log",
    "read_runs",
]
