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
    a64, b64 = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    delta = a64 - b64
    diff = np.abs(delta)
    max_abs = float(diff.max()) if diff.size else 0.0
    mean_abs = float(diff.mean()) if diff.size else 0.0
    # plain sums, not BLAS: multi-threaded BLAS on many small arrays is slow on a busy machine
    norm_a, norm_b, norm_d = (math.sqrt(float(np.square(v).sum())) for v in (a64, b64, delta))
    rel_error = norm_d / norm_a if norm_a > 0 else (0.0 if norm_d == 0 else math.inf)
    if norm_a > 0 and norm_b > 0:
        cosine = float((a64 * b64).sum() / (norm_a * norm_b))
    else:
        cosine = 1.0 if norm_a == norm_b else 0.0
    sqnr_db = math.inf if norm_d == 0 else (20.0 * math.log10(norm_a / norm_d) if norm_a > 0 else -math.inf)
    scale = float(np.abs(a64).max()) if a64.size else 0.0
    within = bool(np.isfinite(max_abs) and max_abs <= atol + rtol * scale)
    return LayerMetrics(max_abs, mean_abs, rel_error, cosine, sqnr_db,
                        float(a64.mean()) if a64.size else 0.0, float(b64.mean()) if b64.size else 0.0, within, scale)
