"""The curve detectors: pure functions on a normalised, binned curve.

Every detector sees the curve with "lower is better" (``mode="max"`` curves are
negated first) and divided by its largest magnitude, so thresholds are free of
the caller's scale. A detector returns a :class:`Detection` (bin indices and
levels in those normalised units) or ``None``; :mod:`dldebug.curves.analysis`
turns detections into findings in the caller's steps and units.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dldebug.curves.signal import MAD_TO_SIGMA, mad_sigma, noise_sigma, odd, smooth_mean, smooth_median

__all__ = [
    "CurveShape",
    "Detection",
    "describe",
    "detect_collapse",
    "detect_diverging",
    "detect_oscillation",
    "detect_stuck",
]

#: A fall smaller than this fraction of the starting level is no meaningful fall.
MIN_RELATIVE_FALL = 0.05
#: A rise above the best level must exceed this fraction of the best level to count as divergence.
MIN_RELATIVE_RISE = 0.3
#: Swings must reach this fraction of the curve's typical level to count as large.
MIN_RELATIVE_SWING = 0.1
#: Below this many points a curve is stuck only if its fall is also within its point noise.
SHORT_CURVE = 50
#: Swings must span at least this fraction of the run.
MIN_OSCILLATION_FRACTION = 0.25
#: A collapsed loss sits this many times below its starting level (two orders of magnitude).
COLLAPSE_FACTOR = 100.0
#: A spike in a collapsed loss exceeds its median level by this factor.
SPIKE_FACTOR = 10.0


@dataclass(frozen=True)
class Detection:
    """One detected phenomenon: a bin range, levels (normalised units) and unit-free numbers."""

    check: str
    start: int  # first bin of the segment
    end: int  # last bin of the segment (inclusive)
    levels: dict[str, float] = field(default_factory=dict)
    numbers: dict[str, float | int] = field(default_factory=dict)
    marks: dict[str, int] = field(default_factory=dict)  # evidence key -> bin index (a step)
    raw_marks: dict[str, int] = field(default_factory=dict)  # evidence key -> raw point index (a step)
    notes: dict[str, float | str] = field(default_factory=dict)  # evidence copied as is (e.g. the lr's role)
    other_bins: tuple[tuple[int, int], ...] = ()  # further segments of the same kind (first, last bin)


@dataclass(frozen=True)
class CurveShape:
    """What every detector needs: the binned curve, its smoothings and robust levels."""

    y: np.ndarray  # binned, normalised, lower is better
    trend: np.ndarray  # running median, or a running mean over whole oscillation periods
    trend_width: int
    sigma: float  # point-to-point noise of y
    sigma_trend: float
    start_level: float  # median of the first bins
    end_level: float  # median of the last bins
    head: int  # bins used for the start and end levels
    period: float | None  # oscillation period in bins, when one was found

    @property
    def size(self) -> int:
        return len(self.y)

    @property
    def fall(self) -> float:
        """How far the curve ended below where it started (negative: it ended higher)."""
        return self.start_level - self.end_level

    def fall_threshold(self) -> float:
        """The smallest fall that is meaningful against this curve's noise and level."""
        return max(4.0 * self.sigma_trend, MIN_RELATIVE_FALL * abs(self.start_level))


def describe(y: np.ndarray, period: float | None) -> CurveShape:
    """Smooth ``y`` and measure its noise and levels; ``period`` (bins) sets the trend window."""
    m = len(y)
    sigma = noise_sigma(y)
    if period is not None:
        trend_width = odd(2 * period)
        trend = smooth_mean(smooth_median(y, 3), trend_width)
        sigma_trend = sigma / np.sqrt(trend_width)
    else:
        trend_width = odd(m / 10, 5)
        trend = smooth_median(y, trend_width)
        sigma_trend = 1.2533 * sigma / np.sqrt(trend_width)  # efficiency of the median
    head = max(5, m // 20)
    return CurveShape(
        y=y, trend=trend, trend_width=trend_width, sigma=sigma, sigma_trend=float(sigma_trend),
        start_level=float(np.median(y[:head])), end_level=float(np.median(y[-head:])), head=head,
        period=period,
    )


def detect_oscillation(y: np.ndarray) -> Detection | None:
    """Large, repeated swings around a flat trend, counted with hysteresis.

    A swing counts when the curve (median of 3, so lone spikes vanish) crosses
    from above ``base + band`` to below ``base - band`` or back, where ``base`` is
    a wide running median and ``band`` three local noise sigmas (at least 10% of
    the level). Five or more crossings on one trend level (crossings inside an
    earlier fall are dropped), spanning a quarter of the run, whose trend over
    whole periods moves less than half a swing, are an oscillation.
    """
    m = len(y)
    if m < 12:
        return None
    smooth = smooth_median(y, 3)
    base = smooth_median(y, odd(m / 3, 5))  # one whole period when three fit in the run
    residual = smooth - base
    # Losses are noisier where they are higher: judge each swing against the local noise.
    local_sigma = smooth_median(np.abs(np.diff(y, prepend=y[0])), odd(m / 10)) * (MAD_TO_SIGMA / np.sqrt(2.0))
    band = np.maximum(3.0 * local_sigma, MIN_RELATIVE_SWING * float(np.median(np.abs(base))))
    side = np.where(residual > band, 1, np.where(residual < -band, -1, 0))
    where = np.flatnonzero(side)
    if len(where) < 2:
        return None
    flips = np.flatnonzero(np.diff(side[where]) != 0)
    if len(flips) < 4:
        return None
    crossings = (where[flips] + where[flips + 1]) / 2.0
    period = 2.0 * float(np.mean(np.diff(crossings)))
    if period < 2:
        return None
    trend = smooth_mean(smooth, odd(2 * period))
    crossings = _trailing_regime(crossings, trend, smooth - trend)
    if len(crossings) < 5:
        return None
    first, last = int(np.floor(crossings[0])), int(np.ceil(crossings[-1]))  # from the first swing to the last
    if last - first < MIN_OSCILLATION_FRACTION * m:
        return None  # a few noisy excursions, or swings riding a trend: not a regime of the run
    around_trend = (smooth - trend)[first:last + 1]
    swing = float(np.percentile(around_trend, 95) - np.percentile(around_trend, 5))
    drift = abs(float(trend[last] - trend[first]))
    if drift > swing / 2:
        return None  # a trend carries the swings (e.g. a cyclic learning rate on a falling loss)
    period = 2.0 * float(np.mean(np.diff(crossings)))
    return Detection("loss.oscillating", first, last, levels={"swing": swing, "drift": drift},
                     numbers={"swings": len(crossings), "period_bins": period})


def _trailing_regime(crossings: np.ndarray, trend: np.ndarray, deviation: np.ndarray) -> np.ndarray:
    """The crossings of the last stretch whose trend stays within half a swing of the final trend.

    A loss that falls and then oscillates has crossings inside the fall too; they
    sit on a different trend level and are dropped.
    """
    at = np.clip(np.round(crossings).astype(np.int64), 0, len(trend) - 1)
    later = deviation[at[len(at) // 2]:at[-1] + 1]
    tolerance = float(np.percentile(later, 95) - np.percentile(later, 5)) / 2 if len(later) > 1 else 0.0
    outside = np.flatnonzero(np.abs(trend[at] - trend[at[-1]]) > tolerance)
    return crossings if not len(outside) else crossings[int(outside[-1]) + 1:]


def detect_diverging(shape: CurveShape) -> Detection | None:
    """A sustained rise of the trend well above the best level it reached."""
    trend = shape.trend
    best = int(np.argmin(trend))
    best_level = float(trend[best])
    threshold = max(5.0 * shape.sigma_trend, MIN_RELATIVE_RISE * abs(best_level),
                    0.25 * max(shape.start_level - best_level, 0.0))
    above = trend > best_level + threshold
    if not above[-1]:
        return None
    inside = np.flatnonzero(~above)
    crossing = int(inside[-1]) + 1 if len(inside) else 0
    if shape.size - crossing < max(3, shape.size // 20):
        return None  # too short to be sustained: a spike at the end
    near_best = np.flatnonzero(trend[:crossing] <= best_level + 0.1 * threshold)
    onset = int(near_best[-1]) if len(near_best) else crossing
    final = float(trend[-1])
    return Detection("loss.diverging", onset, shape.size - 1,
                     levels={"best_level": best_level, "final_level": final, "threshold": threshold},
                     marks={"best_step": best, "crossing_step": crossing})


def detect_stuck(shape: CurveShape) -> Detection | None:
    """No meaningful fall from the starting level to the end of the run."""
    threshold = shape.fall_threshold()
    if shape.fall > threshold:
        return None
    if shape.size < SHORT_CURVE and shape.fall > 3.0 * shape.sigma:
        return None  # a few points falling clearly beyond their noise: too early to call it stuck
    return Detection("loss.stuck", 0, shape.size - 1,
                     levels={"start_level": shape.start_level, "end_level": shape.end_level,
                             "threshold": threshold, "best_level": float(np.min(shape.trend))},
                     numbers={"points": shape.size, "trend_t": _trend_t(shape.y)})


def _trend_t(y: np.ndarray) -> float:
    """The t statistic of the least-squares slope of ``y`` against its index (negative: it improves).

    A steady fall far smaller than the run's noise band (a short run at a small learning rate) is still
    significant over many points; a flat loss with batch noise (lr 0, frozen weights) is not.
    """
    n = len(y)
    if n < 8:
        return 0.0
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2
    slope = float(np.dot(x, y - y.mean()) / np.dot(x, x))
    residual = y - y.mean() - slope * x
    spread = float(np.sqrt(np.dot(residual, residual) / (n - 2) / np.dot(x, x)))
    if spread == 0.0:
        return 0.0 if slope == 0.0 else float(np.sign(slope)) * float("inf")
    return slope / spread


def detect_collapse(shape: CurveShape, raw: np.ndarray, first_index: np.ndarray) -> Detection | None:
    """A loss pinned orders of magnitude below its start, with recurring spikes (lesson 6).

    Spikes are counted on the raw points (``raw``; ``first_index`` maps bins to
    raw indices) so that binning long curves does not hide them.
    """
    start = shape.start_level
    if start <= 0:
        return None
    tail_median = float(np.median(shape.y[shape.size // 2:]))
    if tail_median > start / COLLAPSE_FACTOR:
        return None
    # The collapse begins where the trend comes down to (a few times) the pinned level for good.
    above = np.flatnonzero(shape.trend > np.sqrt(SPIKE_FACTOR) * max(tail_median, 0.0))
    begin = int(above[-1]) + 1 if len(above) else 0
    if shape.size - begin < max(10, shape.size // 10):
        return None
    segment = raw[int(first_index[begin]):]
    median = float(np.median(segment))
    is_spike = segment > SPIKE_FACTOR * max(median, 0.0) + 3.0 * mad_sigma(segment)
    events = np.flatnonzero(np.diff(is_spike.astype(np.int8)) == 1) + 1
    if is_spike[0]:
        events = np.concatenate([[0], events])
    if len(events) < 3:
        return None
    return Detection("loss.collapsed", begin, shape.size - 1,
                     levels={"start_level": start, "median_level": median,
                             "max_spike": float(np.max(segment))},
                     numbers={"spikes": len(events)},
                     raw_marks={"first_spike_step": int(first_index[begin]) + int(events[0])})
