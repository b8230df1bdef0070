"""Truncated-SVD compression of fully connected layers (lesson 7).

``y = W x + b`` with ``W`` (``m x n``) becomes two thinner layers with no
non-linearity between them, ``V_t^T`` then ``U_t S_t`` (+ the bias): ``m*n``
weights become ``t*(m+n)``.

- :func:`lowrank_linear` factorises one layer at a given rank.
- :func:`select_layers` says which layers can be factorised (``nn.Linear``,
  transformers ``Conv1D``, 1x1 ``nn.Conv2d``) and why the others are kept dense
  (tied weights, ``nn.Linear`` subclasses).
- :func:`compress_linear_layers` chooses a rank per layer (energy, output-error
  budget, global parameter budget or a fixed rank), optionally data-aware on
  calibration inputs, and returns a :class:`CompressionResult`.
- :func:`accuracy_vs_size` sweeps parameter budgets and returns the
  accuracy-vs-size curve.
"""

from __future__ import annotations

from dldebug.compress.compress_layers import compress_linear_layers
from dldebug.compress.lowrank import break_even_rank, lowrank_linear, max_useful_rank
from dldebug.compress.result import CompressionResult
from dldebug.compress.selection import SkippedLayer, find_layers, select_layers, tied_parameters
from dldebug.compress.svd import TruncatedSvd, choose_svd_method, svd_residual, truncated_svd
from dldebug.compress.tradeoff import SizeAccuracyCurve, SizePoint, accuracy_vs_size

__all__ = [
    "CompressionResult",
    "SizeAccuracyCurve",
    "SizePoint",
    "SkippedLayer",
    "TruncatedSvd",
    "accuracy_vs_size",
    "break_even_rank",
    "choose_svd_method",
    "compress_linear_layers",
    "find_layers",
    "lowrank_linear",
    "max_useful_rank",
    "select_layers",
    "svd_residual",
    "tied_parameters",
    "truncated_svd",
]
