"""When to stop over-fitting one batch, and what the loss curve says: passed, stalled, crawling, unfinished.

The decision is kept apart from the training loop: pure functions of the loss history. A fixed
budget cries wolf (a healthy MLP with plain SGD 0.05 needs ~300 steps, not 100), so the test runs
until the loss is near zero or has clearly stalled, up to a cap, and only a stall is an error:

* **passed** -- the training loss reached the target (5% of its start, or 1e-4);
* **stalled** -- over the last window the smoothed loss fell by less than 1% (a flat loss still
  near its start is only judged after 200 steps, or after 100 when it moves less than 0.1%: an
  early plateau may break, lesson 2);
* **crawling** -- the cap was reached after at least 200 steps and, at the recent rate, the
  target is more than twice the steps already run away (in effect a stall);
* **unfinished** -- the cap was reached while the loss still fell fast enough: an info finding;
* **diverged** -- the loss turned NaN/Inf; **frozen** -- nothing can be trained.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["CRAWL_FACTOR", "Progress", "Verdict", "VerdictKind", "is_stalled", "progress", "verdict"]

VerdictKind = Literal["passed", "stalled", "crawling", "unfinished", "diverged", "frozen"]
MIN_WINDOW = 25  # the shortest window a trend is read from
MIN_STALL_STEPS = 50  # no stall is judged before this many steps
STALL_DROP = 0.01  # flat: the smoothed loss fell by less than this share over the last window
PLATEAU_SHARE = 0.75  # a flat loss above this share of its start may be an early plateau ...
PLATEAU_STEPS = 200  # ... judged a stall only from this many steps,
DEAD_FLAT_DROP = 0.001  # or from FLAT_STEPS when it moves less than 0.1% per window
FLAT_STEPS = 100
MIN_CRAWL_STEPS = 200  # a slow fall is judged (crawling) only from this many steps
CRAWL_FACTOR = 2.0  # crawling: the target is more than this many times the steps run away


@dataclass(frozen=True)
class Progress:
    """The trend of the last two windows of the loss history (medians: robust to dropout noise)."""

    earlier: float
    recent: float
    window: int

    @property
    def drop(self) -> float:
        """The share the smoothed loss fell by over the last window (negative: it rose)."""
        return (self.earlier - self.recent) / self.earlier if self.earlier > 0 else 0.0

    def steps_to(self, target: float) -> float:
        """Steps to reach ``target`` at the recent rate of log-loss decrease (inf when not falling)."""
        if self.recent <= target:
            return 0.0
        if not (self.earlier > self.recent > 0 and target > 0):
            return math.inf
        rate = math.log(self.earlier / self.recent) / self.window
        return math.log(self.recent / target) / rate


@dataclass(frozen=True)
class Verdict:
    """What the over-fit run showed; ``projected_steps`` is the steps still needed at the recent rate."""

    kind: VerdictKind
    progress: Progress | None = None
    projected_steps: float | None = None

    @property
    def is_error(self) -> bool:
        return self.kind in ("stalled", "crawling", "diverged", "frozen")


def progress(history: Sequence[float]) -> Progress | None:
    """The medians of the last two windows of ``max(25, len // 4)`` steps, or None when too short."""
    window = max(MIN_WINDOW, len(history) // 4)
    if len(history) < 2 * window:
        return None
    earlier = statistics.median(history[-2 * window:-window])
    recent = statistics.median(history[-window:])
    return Progress(float(earlier), float(recent), window)


def is_stalled(history: Sequence[float], initial: float) -> bool:
    """True when the loss has clearly stopped falling (the early-stop test, run during training)."""
    steps = len(history)
    trend = progress(history)
    if trend is None or steps < MIN_STALL_STEPS or trend.drop >= STALL_DROP:
        return False
    near_start = initial > 0 and trend.recent > PLATEAU_SHARE * initial
    dead_flat = abs(trend.drop) < DEAD_FLAT_DROP and steps >= FLAT_STEPS
    return not near_start or steps >= PLATEAU_STEPS or dead_flat


def verdict(history: Sequence[float], *, initial: float, target: float, cap: int) -> Verdict:
    """Judge a finished run: ``history`` is the training loss per step, ``target`` the pass level.

    Example:
        >>> verdict([2.3] * 300, initial=2.3, target=0.115, cap=1000).kind
        'stalled'
        >>> verdict([2.3 * 0.99 ** i for i in range(100)], initial=2.3, target=0.115, cap=100).kind
        'unfinished'
    """
    if not history:
        return Verdict("frozen")
    last = history[-1]
    if not math.isfinite(last):
        return Verdict("diverged")
    if last <= target:
        return Verdict("passed", progress(history), 0.0)
    trend = progress(history)
    projected = trend.steps_to(target) if trend is not None else None
    if is_stalled(history, initial):
        return Verdict("stalled", trend, projected)
    steps = len(history)
    if (steps >= cap and steps >= MIN_CRAWL_STEPS and projected is not None
            and projected > CRAWL_FACTOR * steps):
        return Verdict("crawling", trend, projected)
    return Verdict("unfinished", trend, projected)
