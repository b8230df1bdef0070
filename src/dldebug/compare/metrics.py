"""Per-layer agreement metrics between a reference output ``a`` and a candidate ``b``.

The lesson's check (compare each layer's mean) is kept as ``mean_a``/``mean_b``;
the rest are the usual numeric-suite metrics: max/mean absolute difference, the
relative error ``||a - b|| / ||a||``, cosine similarity and SQNR in dB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["LayerMetrics", "layer_metrics"]


@dataclass(frozen=True)
class LayerMetrics:
    """How far ``b`` is from ``a`` for one layer.

    ``within`` is ``max|a - b| <= atol + rtol * max|a|``: the tolerance scales with
    the layer's magnitude, so rounding noise next to a zero element of a large
    activation map is not a divergence (an element-wise ``rtol * |a|`` would be).
    """

    max_abs: float
    mean_abs: float
    rel_error: float
    cosine: float
    sqnr_db: float
    mean_a: float
    mean_b: float
    within: bool
    max_abs_a: float = 0.0

    def to_dict(self) -> dict[str, float | bool]:
        return {"max_abs": self.max_abs, "mean_abs": self.mean_abs, "rel_error": self.rel_error,
                "cosine": self.cosine, "sqnr_db": self.sqnr_db, "mean_a": self.mean_a, "mean_b": self.mean_b,
                "within": self.within, "max_abs_a": self.max_abs_a}


def _dot(x: np.ndarray, y: np.ndarray) -> float:
    axes = list(range(x.ndim))  # the sum of x * y over every axis, whatever the two memory orders
    return float(np.einsum(x, axes, y, axes, []))


def layer_metrics(a: np.ndarray, b: np.ndarray, *, rtol: float = 1e-4, atol: float = 1e-5) -> LayerMetrics:
    """Compare two same-shape arrays.

    Args:
        a: the reference output.
        b: the candidate output, already in ``a``'s layout.
        rtol: tolerance relative to ``max|a|``.
        atol: absolute tolerance.

    Returns:
        The metrics; NaN/Inf in ``b`` where ``a`` is finite count as outside tolerance.

    Example:
        >>> m = layer_metrics(np.array([1.0, 2.0]), np.array([1.0, 2.1]))
        >>> round(m.max_abs, 3), m.within
        (0.1, False)
    """
    # float64 copies, each in its own memory order (a layout view of b is copied sequentially; the
    # elementwise operations below align the two); sums by einsum: one pass, no temporaries and no BLAS
    # (multi-threaded BLAS on many small arrays is slow on a busy machine)
    a64, b64 = np.asarray(a).astype(np.float64), np.asarray(b).astype(np.float64)
    if not a64.size:
        return LayerMetrics(0.0, 0.0, 0.0, 1.0, math.inf, 0.0, 0.0, True, 0.0)
    norm_a, norm_b = math.sqrt(_dot(a64, a64)), math.sqrt(_dot(b64, b64))
    dot = _dot(a64, b64)
    scale = float(np.maximum(a64.max(), -a64.min()))  # max|a|, NaN kept
    mean_a, mean_b = float(a64.mean()), float(b64.mean())
    delta = np.subtract(a64, b64, out=a64)  # a64 is a private copy
    norm_d = math.sqrt(_dot(delta, delta))
    diff = np.abs(delta, out=delta)
    max_abs, mean_abs = float(diff.max()), float(diff.mean())
    rel_error = norm_d / norm_a if norm_a > 0 else (0.0 if norm_d == 0 else math.inf)
    cosine = dot / (norm_a * norm_b) if norm_a > 0 and norm_b > 0 else (1.0 if norm_a == norm_b else 0.0)
    sqnr_db = math.inf if norm_d == 0 else (20.0 * math.log10(norm_a / norm_d) if norm_a > 0 else -math.inf)
    within = bool(np.isfinite(max_abs) and max_abs <= atol + rtol * scale)
    return LayerMetrics(max_abs, mean_abs, rel_error, cosine, sqnr_db, mean_a, mean_b, within, scale)
