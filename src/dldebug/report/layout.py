"""Where plot labels go so that none overlaps another: boxes and a greedy lane assignment (pure geometry).

Marker labels sit in horizontal lanes above a plot: each label is centred on its marker (moved
sideways to stay inside the plot) and takes the first lane where it keeps ``gap`` from every
label already there. Two findings at the same step (``monitor.nonfinite_module`` over
``loss.nonfinite``) land in two lanes instead of on top of each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

__all__ = ["Box", "LanePlacement", "assign_lanes", "overlapping_pairs"]


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle (x0 <= x1, y0 <= y1) in any one coordinate system."""

    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: Box, *, tolerance: float = 0.0) -> bool:
        """True when the boxes share an area wider and taller than ``tolerance`` (touching edges do not count).

        Example:
            >>> Box(0, 0, 10, 5).overlaps(Box(9, 0, 20, 5)), Box(0, 0, 10, 5).overlaps(Box(10, 0, 20, 5))
            (True, False)
        """
        width = min(self.x1, other.x1) - max(self.x0, other.x0)
        height = min(self.y1, other.y1) - max(self.y0, other.y0)
        return width > tolerance and height > tolerance


def overlapping_pairs(boxes: Sequence[Box], *, tolerance: float = 0.0) -> list[tuple[int, int]]:
    """Index pairs (i < j) of the boxes that overlap."""
    return [(i, j) for (i, a), (j, b) in combinations(enumerate(boxes), 2) if a.overlaps(b, tolerance=tolerance)]


@dataclass(frozen=True)
class LanePlacement:
    """Where one label goes: the left edge of its box and its lane (0 = nearest the plot)."""

    x0: float
    lane: int


def assign_lanes(anchors: Sequence[float], widths: Sequence[float], *, left: float, right: float,
                 gap: float = 4.0, max_lanes: int = 6) -> list[LanePlacement | None]:
    """Place labels of the given widths centred on their anchors, in the fewest lanes without overlaps.

    Args:
        anchors: the x of each label's marker.
        widths: each label's width (same units as ``anchors``).
        left: the smallest x a label may start at.
        right: the largest x a label may end at.
        gap: the free space kept between two labels in one lane.
        max_lanes: lanes available; a label that fits none gets ``None`` (the caller lists it elsewhere).

    Returns:
        One :class:`LanePlacement` (or None) per label, in the input order.

    Example:
        >>> [p.lane for p in assign_lanes([10, 10, 200], [60, 80, 50], left=0, right=400)]
        [0, 1, 0]
    """
    taken: list[list[tuple[float, float]]] = [[] for _ in range(max_lanes)]
    placed: list[LanePlacement | None] = [None] * len(anchors)
    for index in sorted(range(len(anchors)), key=lambda i: anchors[i]):
        width = widths[index]
        x0 = min(max(anchors[index] - width / 2, left), max(right - width, left))
        x1 = x0 + width
        for lane, intervals in enumerate(taken):
            if all(x1 + gap <= a or b + gap <= x0 for a, b in intervals):
                intervals.append((x0, x1))
                placed[index] = LanePlacement(x0, lane)
                break
    return placed
