"""Plateaus that break, anywhere in a run: flat stretches followed by a clear fall.

An early plateau (lesson 2) starts the run flat and then falls. A mid-run plateau is a flat stretch
after the curve had already fallen: a learning rate that dropped to ~0 and came back, a deep
linear net passing a saddle. What sets a plateau apart from a healthy decay is the *break*: a
healthy loss falls ever more slowly (its slope only shrinks), while after a plateau the fall is
clearly steeper than on the plateau itself.

Pure functions on the normalised, binned curve (lower is better); see :mod:`dldebug.curves.detectors`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.ndimage import binary_closing

from dldebug.curves.detectors import MIN_RELATIVE_FALL, CurveShape, Detection
from dldebug.curves.signal import MAD_TO_SIGMA, odd, smooth_median

__all__ = ["LONG_PLATEAU_SHARE", "LONG_RUN_POINTS", "MAX_PLATEAU_START", "MIN_PLATEAU_FRACTION", "ZERO_LR_FRACTION",
           "detect_plateaus", "explain_with_lr"]

#: A flat stretch must cover at least this fraction of the run to be a plateau.
MIN_PLATEAU_FRACTION = 0.1
#: An early plateau starts within this fraction of the run (after a short initial drop at most).
MAX_PLATEAU_START = 0.1
#: A plateau covering at least this share of the run lost a long share of it: a warning.
LONG_PLATEAU_SHARE = 0.4
#: ... of a run of at least this many points (bins).
LONG_RUN_POINTS = 50
#: A learning rate at most this fraction of the run's largest one is ~0.
ZERO_LR_FRACTION = 0.01
#: An early plateau must last at least this many points (bins): a few flat first steps are noise.
MIN_EARLY_STRETCH = 8
#: Mid-run plateaus are looked for in curves of at least this many points (bins).
MIN_MIDRUN_POINTS = 50
#: ... and must last at least this many points (bins): shorter flat stretches are within the reach of
#: batch-to-batch noise and of the order in which batches come (a healthy digits run shows 11 flat steps).
MIN_MIDRUN_STRETCH = 20
#: The fall after a plateau must be this many times steeper than the drift on it.
BREAK_STEEPNESS = 3.0


def detect_plateaus(shape: CurveShape) -> list[Detection]:
    """Every plateau that broke, in run order: the early one (if any), then mid-run ones.

    Returns:
        Detections ``loss.plateau`` with ``numbers`` ``fraction_of_run``, ``early`` (1 or 0) and
        ``run_points`` (the bins of the run).
    """
    found: list[Detection] = []
    early = _early_plateau(shape)
    if early is not None:
        found.append(replace(early, numbers={**early.numbers, "early": 1}))
    found.extend(_midrun_plateaus(shape, early.end + 1 if early is not None else 0))
    return [replace(d, numbers={**d.numbers, "run_points": shape.size}) for d in found]


def _early_plateau(shape: CurveShape) -> Detection | None:
    """A flat stretch at the start (or right after a short initial drop) that ended in a meaningful fall.

    The plateau ends at the last bin still inside its noise band (its level minus three noise
    sigmas of a narrow running median) before the trend is halfway down: the onset of the fall,
    not the middle of it. Candidate starts are tried over the first 10% of the run, earliest first.
    """
    if shape.fall <= shape.fall_threshold():
        return None
    # A narrow running median keeps the corner sharp (a wide one starts falling early).
    width = odd(shape.size / 200, 5)
    edge = smooth_median(shape.y, width)
    band = 3.0 * 1.2533 * shape.sigma / np.sqrt(width) + 1e-12
    for candidate in range(0, max(1, int(MAX_PLATEAU_START * shape.size)), max(1, shape.size // 100)):
        found = _early_from(shape, edge, band, candidate)
        if found is not None:
            return found
    return None


def _early_from(shape: CurveShape, edge: np.ndarray, band: float, candidate: int) -> Detection | None:
    level = float(np.median(shape.y[candidate:candidate + shape.head]))
    fall = level - shape.end_level
    if fall <= max(4.0 * shape.sigma_trend, MIN_RELATIVE_FALL * abs(level)):
        return None
    halfway = np.flatnonzero(shape.trend[candidate:] < level - max(band, fall / 2))
    if not len(halfway):
        return None
    inside = np.flatnonzero(edge[candidate:candidate + int(halfway[0]) + 1] >= level - band)
    if not len(inside):
        return None
    end = candidate + int(inside[-1])
    start = int(np.argmax(edge[:end + 1] <= level + band))  # after an initial drop, if any
    shortest = max(MIN_EARLY_STRETCH, MIN_PLATEAU_FRACTION * shape.size)
    if start > MAX_PLATEAU_START * shape.size or end + 1 - start < shortest:
        return None
    flat = edge[start:end + 1]
    if np.mean(np.abs(flat - level) <= band) < 0.9:
        return None  # not flat: the curve wandered out of the band before the fall
    quarter = max(1, len(flat) // 4)
    if abs(float(np.median(flat[:quarter]) - np.median(flat[-quarter:]))) > band:
        return None  # a slow, steady fall through the band, not a flat stretch
    return Detection("loss.plateau", start, end,
                     levels={"level_before": level, "level_after": shape.end_level, "band": band},
                     numbers={"fraction_of_run": (end + 1 - start) / shape.size})


def _midrun_plateaus(shape: CurveShape, first: int) -> list[Detection]:
    """Flat stretches starting at or after bin ``first`` whose end is a break into a steeper fall.

    A candidate level is the median of a few bins; the stretch is the maximal run of a narrow
    running median within a band of three local noise sigmas around it. It is a plateau when it
    covers at least 10% of the run and 20 bins and leaves the band downwards. Its ends are then
    cut at the knees of hinge fits (:func:`_knees`); what is left must drift by less than the band
    from its first quarter to its last, and the fall over the next
    stretch (as long as the plateau, at least 5% of the run) must be meaningful (four sigmas of the
    two medians compared, 5% of the level) and at least three times steeper than the drift across
    the stretch itself.
    """
    y, m = shape.y, shape.size
    if m < MIN_MIDRUN_POINTS:
        return []
    min_length = max(MIN_MIDRUN_STRETCH, int(np.ceil(MIN_PLATEAU_FRACTION * m)))
    width = odd(m / 200, 5)
    edge = smooth_median(y, width)
    # Losses are noisier where they are higher: the band follows the local noise.
    local_sigma = smooth_median(np.abs(np.diff(y, prepend=y[0])), odd(m / 10)) * (MAD_TO_SIGMA / np.sqrt(2.0))
    head = max(3, m // 100)
    found: list[Detection] = []
    candidate = floor = first
    while candidate < m - min_length:
        detection = _midrun_from(shape, edge, local_sigma, width, head, (floor, candidate), min_length)
        if detection is None:
            candidate += max(1, m // 200)
            continue
        found.append(detection)
        candidate = floor = detection.end + 1
    return found


def _midrun_from(shape: CurveShape, edge: np.ndarray, local_sigma: np.ndarray, width: int, head: int,
                 where: tuple[int, int], min_length: int) -> Detection | None:
    """The plateau through bin ``where[1]``, starting no earlier than bin ``where[0]``, or None."""
    y, m = shape.y, shape.size
    floor, candidate = where
    level = float(np.median(y[candidate:candidate + head]))
    band = 3.0 * 1.2533 * float(local_sigma[candidate]) / np.sqrt(width) + 1e-12 * max(abs(level), 1e-300)
    # Brief excursions of the running median (its own noise) do not end a plateau: close gaps of
    # up to two median widths.
    inside = binary_closing(np.abs(edge - level) <= band, structure=np.ones(2 * width + 1, dtype=bool))
    if not inside[candidate]:
        return None
    after = np.flatnonzero(~inside[candidate:])
    end = candidate + int(after[0]) - 1 if len(after) else m - 1
    before = np.flatnonzero(~inside[floor:candidate + 1])
    start = floor + (int(before[-1]) + 1 if len(before) else 0)
    if end + 1 - start < min_length or end >= m - 2 or edge[end + 1] > level:
        return None  # too short, no time left to fall, or it left the band upwards
    # On a slow fall the band holds more than the plateau: cut it at the knees first, then judge.
    start, end = _knees(y, start, end, min(m - 1 - end, max(end + 1 - start, m // 20)))
    start = max(start, floor)
    length = end + 1 - start
    if length < min_length // 2 or end >= m - 2:
        return None  # the best-fitting knees leave no flat stretch: a bend, not a plateau
    level = float(np.median(y[start:end + 1]))
    quarter = max(2, length // 4)
    drift = float(np.median(y[start:start + quarter]) - np.median(y[end + 1 - quarter:end + 1]))
    if abs(drift) > band:
        return None  # a slow, steady fall through the band, not a flat stretch
    reach = min(m - 1 - end, max(length, m // 20))
    fallen = level - float(np.median(y[end + reach - min(quarter, reach) + 1:end + reach + 1]))
    # Four sigmas of the difference of two medians (the plateau's and the last quarter of the reach).
    sigma = float(local_sigma[candidate])
    needed = max(4.0 * 1.2533 * sigma * np.sqrt(1.0 / length + 1.0 / min(quarter, reach)), 4.0 * shape.sigma_trend,
                 MIN_RELATIVE_FALL * abs(level))
    if fallen <= needed or not _breaks(edge, start, end, reach, 1.2533 * sigma):
        return None  # no clear fall after it, or no steeper than on the stretch: a decay slowing down
    return Detection("loss.plateau", start, end,
                     levels={"level_before": level, "level_after": level - fallen, "band": band},
                     numbers={"fraction_of_run": length / m, "early": int(start <= MAX_PLATEAU_START * m)})


def _breaks(y: np.ndarray, start: int, end: int, reach: int, sigma: float) -> bool:
    """Whether the fall after the stretch is clearly steeper than the stretch's own drift.

    Both are least-squares slopes (falling counts positive) of the narrow running median, so that a
    lone spike does not tilt them. ``sigma`` is 1.25x the point noise: the running median is less
    noisy than that, but its points are correlated over its width, which costs the slope about
    as much. The fall must be at least three times
    the drift and exceed it by three standard errors of their difference, so that noise cannot
    make a healthy decay, whose slope only shrinks, look like a break.
    """
    within, within_se = _fall_rate(y[start:end + 1], sigma)
    after, after_se = _fall_rate(y[end + 1:end + 1 + reach], sigma)
    return (after >= BREAK_STEEPNESS * max(within, 0.0)
            and after - within >= 3.0 * float(np.hypot(after_se, within_se)))


def _fall_rate(v: np.ndarray, sigma: float) -> tuple[float, float]:
    """(-slope, its standard error) of a least-squares line through ``v`` with point noise ``sigma``."""
    t = np.arange(len(v), dtype=np.float64)
    spread = float(np.sum((t - t.mean()) ** 2))
    if len(v) < 3 or spread <= 0:
        return 0.0, float("inf")
    slope = float(np.dot(t - t.mean(), v - v.mean())) / spread
    return -slope, sigma / np.sqrt(spread)


def _knees(y: np.ndarray, start: int, end: int, reach: int) -> tuple[int, int]:
    """The plateau's boundaries refined to the knees of least-squares hinge fits.

    A noise band only says where the curve is within reach of the plateau's level; on a slow fall
    that is well before the fall stops. Before the plateau the points are fitted by a line that
    meets the plateau's constant at the knee (a continuous hinge), and after it by a constant
    that turns into a line: the knees are the best-fitting turning points.
    """
    length = end + 1 - start
    before = max(0, start - max(length // 2, 4))
    if start - before >= 4:
        start = _best_knee(y[before:end + 1], falling_first=True) + before
    stop = min(len(y), end + 1 + reach)
    if stop - end - 1 >= 4:
        end = _best_knee(y[start:stop], falling_first=False) + start - 1
    return start, end


def _best_knee(v: np.ndarray, *, falling_first: bool) -> int:
    """The k in [2, len(v) - 2] where ``c + b * min(t - k, 0)`` (or ``max(t - k, 0)``) fits ``v`` best.

    ``falling_first``: a line then a constant (the knee starts the constant); else a constant then a
    line (the knee starts the line). Vectorised over k with cumulative sums.
    """
    n = len(v)
    t = np.arange(n, dtype=np.float64)
    if not falling_first:  # mirror: a constant then a line is a line then a constant, read backwards
        return n - _best_knee(v[::-1].copy(), falling_first=True)
    ks = np.arange(2, n - 1, dtype=np.float64)
    c1, ct, ctt, cy, cty = (np.concatenate([[0.0], np.cumsum(a)]) for a in (np.ones(n), t, t * t, v, t * v))
    idx = ks.astype(np.int64)
    count, s1, s2, sy_before, sty_before = c1[idx], ct[idx], ctt[idx], cy[idx], cty[idx]
    sx = s1 - ks * count  # x = t - k before the knee, 0 after
    sxx = s2 - 2 * ks * s1 + ks * ks * count
    sxy = sty_before - ks * sy_before
    sy = float(cy[-1])
    det = n * sxx - sx * sx
    safe = np.where(det > 0, det, 1.0)
    # Explained sum of squares of the 2-parameter least-squares fit (intercept, slope on x).
    explained = np.where(det > 0, (sxx * sy * sy - 2 * sx * sy * sxy + n * sxy * sxy) / safe, sy * sy / n)
    return int(ks[int(np.argmax(explained))]) if len(ks) else n // 2


def explain_with_lr(detection: Detection, lr: np.ndarray) -> dict[str, float | str]:
    """What the learning rate did during a plateau and at its break (``lr``: one value per bin, NaN unknown).

    Returns:
        ``lr_cause``: ``"zero"`` (the lr was ~0 on the plateau), ``"decay"`` (the lr fell at the
        break: the fall is the schedule's doing), ``"warmup"`` (the lr was still rising on an early
        plateau), ``"raised"`` (the lr rose at the break), ``"none"``; plus ``lr_during``,
        ``lr_after`` and ``lr_max`` when known, and for ``"zero"`` the bins where the lr stayed ~0
        (``zero_lr_first_bin``, ``zero_lr_last_bin``). Empty when the lr is unknown there.
    """
    start, end = detection.start, detection.end
    during = lr[start:end + 1]
    reach = max((end + 1 - start) // 2, len(lr) // 20)
    later = lr[end + 1:end + 1 + reach]
    if not (np.isfinite(during).any() and np.isfinite(later).any()):
        return {}
    lr_max = float(np.nanmax(np.abs(lr)))
    lr_during, lr_after = float(np.nanmedian(during)), float(np.nanmedian(later))
    quarter = max(1, len(during) // 4)
    rising = float(np.nanmedian(during[:quarter])) < 0.5 * float(np.nanmedian(during[-quarter:]))
    if lr_max > 0 and abs(lr_during) <= ZERO_LR_FRACTION * lr_max:
        cause = "zero"
        zero = np.abs(np.nan_to_num(lr, nan=lr_max)) <= ZERO_LR_FRACTION * lr_max
        middle = (start + end) // 2 if zero[(start + end) // 2] else start + int(np.argmax(zero[start:end + 1]))
        outside = np.flatnonzero(~zero)
        first = int(outside[outside < middle][-1]) + 1 if np.any(outside < middle) else 0
        last = int(outside[outside > middle][0]) - 1 if np.any(outside > middle) else len(lr) - 1
        return {"lr_cause": cause, "lr_during": lr_during, "lr_after": lr_after, "lr_max": lr_max,
                "zero_lr_first_bin": first, "zero_lr_last_bin": last}
    elif lr_after <= 0.7 * lr_during:
        cause = "decay"
    elif rising and detection.numbers.get("early"):
        cause = "warmup"
    elif lr_after >= 1.5 * lr_during:
        cause = "raised"
    else:
        cause = "none"
    return {"lr_cause": cause, "lr_during": lr_during, "lr_after": lr_after, "lr_max": lr_max}
