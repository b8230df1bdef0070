"""Early blow-up: a loss that jumps far above where it began within the first steps of a run.

A learning rate far too high shows itself this way: the loss leaves its starting level by orders of
magnitude in the first steps, then settles high, oscillates or falls back only slowly. Levels that
include the jump (the median of the first 5% of the run, say) hide it, so the starting level here
is the median of the (at most 21) finite points just *before* the jump.

Works on the raw finite prefix of a ``mode="min"`` curve with a positive start (ratios need a
positive level); :mod:`dldebug.curves.analysis` turns the result into a ``loss.blowup`` finding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter

from dldebug.curves.signal import BinnedCurve, odd, smooth_median

__all__ = ["BASELINE_POINTS", "EARLY_FRACTION", "JUMP_FACTOR", "Blowup", "detect_blowup"]

#: A jump must take the loss at least this many times above its starting level (a warm-up bump is <= ~3x).
JUMP_FACTOR = 4.0
#: The jump must start within this fraction of the run (or within its first ``EARLY_STEPS`` points).
EARLY_FRACTION = 0.05
EARLY_STEPS = 5
#: The starting level is the median of at most this many points just before the jump.
BASELINE_POINTS = 21  # odd: a running median window has an exact middle
#: A loss that ends at least this many times above its starting level never came back (the message says so).
NOT_RECOVERED_FACTOR = 1.5
#: A loss that came back only this close to its start (or higher) after the jump never trained below where it
#: began: a blow-up that wasted the run, however quickly it came back (HF DistilBERT at lr 1: 0.69 -> 951 -> 0.69).
NO_PROGRESS_FACTOR = 0.9
#: "High" means at least this many times the starting level ...
HIGH_FACTOR = 3.0
#: ... and a run that spent at least this share of itself high after the jump recovered too slowly.
SLOW_RECOVERY_SHARE = 0.2


@dataclass(frozen=True)
class Blowup:
    """An early blow-up, as raw point indices and levels in the curve's own units."""

    jump_index: int  # the first point of the jump
    peak_index: int
    recovered_index: int  # the last point still high (the run's last point if it never came back)
    start_level: float  # median of the points before the jump
    jump_level: float  # median of the points right after the jump
    peak_level: float
    settled_level: float  # median of the last 10% of the run
    high_share: float  # share of the run spent high after the jump
    baseline_points: int

    @property
    def recovered(self) -> bool:
        """Whether the loss came back below its starting level by the end of the run (it trained after the jump)."""
        return self.settled_level < NO_PROGRESS_FACTOR * self.start_level


def detect_blowup(values: np.ndarray, binned: BinnedCurve, *, scale: float = 1.0,
                  oscillating: bool = False) -> Blowup | None:
    """An early jump of at least ``JUMP_FACTOR`` x that was sustained, or None.

    Args:
        values: the finite prefix of a lower-is-better curve, in its own units.
        binned: the same prefix summarised into bins (for the long-run measurements), divided by ``scale``.
        scale: what ``binned`` was divided by.
        oscillating: whether the curve was found to oscillate (an aftermath that counts as sustained).

    Returns:
        The blow-up when the loss jumped within the first 5% of the run (or first 5 points) to
        at least 4x its starting level (median of the 3-9 points from the jump on, so a lone
        spike is no jump), and then ended no lower than 0.9x its start (it never trained below
        where it began), stayed at least 3x its start for at least 20% of the run, or oscillated.
    """
    n = len(values)
    jump = _find_jump(values)
    if jump is None:
        return None
    index, start, level = jump
    settled = float(np.median(values[-max(3, n // 10):]))
    high_bins, high_share = _high_stretch(binned, index, HIGH_FACTOR * start / scale)
    if settled < NO_PROGRESS_FACTOR * start and high_share < SLOW_RECOVERY_SHARE and not oscillating:
        return None  # it came back quickly and trained below its start: a transient, not a blow-up
    peak = index + int(np.argmax(values[index:]))
    recovered = n - 1 if settled >= NO_PROGRESS_FACTOR * start else min(
        n - 1, int(binned.first_index[high_bins]) + binned.bin_size - 1)
    return Blowup(jump_index=index, peak_index=peak, recovered_index=recovered, start_level=start,
                  jump_level=level, peak_level=float(values[peak]), settled_level=settled,
                  high_share=high_share, baseline_points=min(index, BASELINE_POINTS))


def _find_jump(values: np.ndarray) -> tuple[int, float, float] | None:
    """(index of the jump's first point, the starting level before it, the level just after it), or None.

    The level after a candidate point is the median of the next 3-9 points; the jump's first
    point is the first of them at least 4x the start. With fewer than 3 points before the jump the
    start itself is as noisy as one point, so the jump must also clear four times the curve's own
    point-to-point noise (in log scale).
    """
    n = len(values)
    width = odd(min(9, max(3, n // 100)))
    limit = min(max(EARLY_STEPS, math.ceil(EARLY_FRACTION * n)), n - width)
    if limit < 1 or not values[0] > 0:
        return None
    ahead = median_filter(values[:limit + width], size=width, origin=-(width // 2), mode="nearest")
    baselines = _baselines(values, limit)
    jumped = np.flatnonzero(ahead[1:limit + 1] >= JUMP_FACTOR * baselines[1:]) + 1
    noise = None
    for candidate in jumped[:2 * width].tolist():  # a rejected candidate is a low first point: try the next
        rise = np.flatnonzero(values[candidate:candidate + width] >= JUMP_FACTOR * baselines[candidate])
        index = candidate + (int(rise[0]) if len(rise) else 0)
        start = float(np.median(values[max(0, index - BASELINE_POINTS):index]))
        level = float(np.median(values[index:index + width]))
        if not (start > 0 and level >= JUMP_FACTOR * start):
            continue
        if index < 3:
            noise = _log_noise(values) if noise is None else noise
            if np.log(level / start) < np.log(JUMP_FACTOR) + 4.0 * noise:
                continue  # one or two starting points cannot tell a jump from a low first point
        return index, start, level
    return None


def _log_noise(values: np.ndarray) -> float:
    """Point-to-point noise of log(values): the MAD of its first differences (robust to the jump itself)."""
    logs = np.log(np.maximum(values, np.finfo(np.float64).tiny))
    diffs = np.diff(logs)
    return 1.4826 * float(np.median(np.abs(diffs - np.median(diffs)))) / np.sqrt(2.0)


def _baselines(values: np.ndarray, limit: int) -> np.ndarray:
    """For each candidate jump index i, the median of the (at most 21) points just before it (index 0: unused)."""
    baselines = np.empty(limit + 1)
    baselines[0] = values[0]
    for i in range(1, min(limit, BASELINE_POINTS) + 1):
        baselines[i] = np.median(values[:i])
    if limit > BASELINE_POINTS:
        # A centred window of 21 at k covers values[k - 10:k + 11]: at k = i - 11 it ends just before i.
        window = median_filter(values[:limit], size=BASELINE_POINTS, mode="nearest")
        shift = BASELINE_POINTS // 2 + 1
        baselines[BASELINE_POINTS + 1:] = window[BASELINE_POINTS + 1 - shift:limit + 1 - shift]
    return baselines


def _high_stretch(binned: BinnedCurve, jump: int, threshold: float) -> tuple[int, float]:
    """(last bin of the first stretch spent above ``threshold`` after the jump, that stretch's share of the run).

    The binned curve is smoothed by a running median over 2% of the run so that single low points
    inside a high stretch do not end it.
    """
    m = len(binned.values)
    first = min(m - 1, int(np.searchsorted(binned.first_index, jump, side="right")))  # the first bin after it
    smooth = smooth_median(binned.values[first:], odd(m / 50, 3))  # the points before the jump stay out
    below = np.flatnonzero(smooth < threshold)
    last = m - 1 if not len(below) else first + int(below[0]) - 1
    if last < first:
        return max(first - 1, 0), 0.0
    return last, (last + 1 - first) / m
