"""Loss and metric curve analysis (pure numpy/scipy) and readers for training logs.

``diagnose_curve`` judges a series of values; ``read_log``/``diagnose_log`` read
CSV, JSON lines, TensorBoard event directories, Lightning ``metrics.csv`` and
Hugging Face ``trainer_state.json`` first.
"""

from __future__ import annotations

from dldebug.curves.analysis import diagnose_curve

__all__ = ["diagnose_curve"]
