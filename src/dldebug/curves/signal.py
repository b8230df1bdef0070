"""Robust, vectorised signal helpers for curve analysis: binning, smoothing, noise.

Everything here works on 1-D float arrays of finite values and never raises on
them; the detectors in :mod:`dldebug.curves.detectors` build on these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter, uniform_filter1d

__all__ = ["MAD_TO_SIGMA", "BinnedCurve", "bin_curve", "mad_sigma", "noise_sigma", "odd", "smooth_mean",
           "smooth_median"]

#: Curves longer than this are summarised by per-bin medians before the segment logic runs.
MAX_BINS = 2000
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class BinnedCurve:
    """A curve summarised into bins: per-bin median value, first/last step and raw index.

    For curves of at most ``MAX_BINS`` points every bin holds one point and the
    arrays equal the input.
    """

    values: np.ndarray  # median of each bin
    first_step: np.ndarray  # step of each bin's first point
    last_step: np.ndarray  # step of each bin's last point
    first_index: np.ndarray  # index (into the raw curve) of each bin's first point
    bin_size: int

    @property
    def center_step(self) -> np.ndarray:
        return (self.first_step + self.last_step) / 2.0


def bin_curve(values: np.ndarray, steps: np.ndarray, max_bins: int = MAX_BINS) -> BinnedCurve:
    """Summarise ``values`` into at most ``max_bins`` bins of equal size (the last may be shorter).

    Example:
        >>> b = bin_curve(np.arange(10.0), np.arange(10), max_bins=5)
        >>> b.values.tolist(), b.first_step.tolist()
        ([0.5, 2.5, 4.5, 6.5, 8.5], [0, 2, 4, 6, 8])
    """
    n = len(values)
    size = max(1, -(-n // max_bins))
    if size == 1:
        index = np.arange(n)
        return BinnedCurve(values.copy(), steps.copy(), steps.copy(), index, 1)
    full = n // size
    medians = np.median(values[: full * size].reshape(full, size), axis=1)
    if full * size < n:
        medians = np.append(medians, np.median(values[full * size:]))
    first_index = np.arange(0, n, size)
    last_index = np.minimum(first_index + size - 1, n - 1)
    return BinnedCurve(medians, steps[first_index], steps[last_index], first_index, size)


def odd(width: float, minimum: int = 3) -> int:
    """The odd integer window nearest ``width`` and at least ``minimum``."""
    w = max(minimum, int(width))
    return w if w % 2 else w + 1


def smooth_median(values: np.ndarray, width: int) -> np.ndarray:
    """Centred running median (reflecting at the ends), robust to isolated spikes."""
    if len(values) == 0:
        return values.copy()
    return median_filter(values, size=max(1, min(width, len(values))), mode="reflect")


def smooth_mean(values: np.ndarray, width: int) -> np.ndarray:
    """Centred running mean; over a whole oscillation period it cancels the oscillation."""
    if len(values) == 0:
        return values.copy()
    return uniform_filter1d(values, size=max(1, min(width, len(values))), mode="reflect")


def mad_sigma(values: np.ndarray) -> float:
    """Robust standard deviation: 1.4826 x the median absolute deviation (0.0 when empty)."""
    if len(values) == 0:
        return 0.0
    return float(MAD_TO_SIGMA * np.median(np.abs(values - np.median(values))))


def noise_sigma(values: np.ndarray) -> float:
    """Point-to-point noise of a curve, from the MAD of its first differences.

    Differencing removes a slow trend, so a falling curve does not count as noise.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = np.linspace(2, 0, 20_000) + rng.normal(0, 0.1, 20_000)
        >>> round(noise_sigma(y), 2)
        0.1
    """
    if len(values) < 3:
        return 0.0
    return mad_sigma(np.diff(values)) / float(np.sqrt(2.0))
