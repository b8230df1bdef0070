"""A bounded, decimated history of per-step values for arbitrarily long runs.

The history keeps at most ``capacity`` rows. When it fills up, every other row
is dropped and the sampling stride doubles, so a run of any length is kept as
an evenly spaced sample of its whole course (not only its end). Sub-sampling,
unlike averaging, keeps the curve's noise level intact, which the curve
analysis judges findings against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dldebug.errors import InputError

__all__ = ["DecimatedHistory"]


class DecimatedHistory:
    """Rows of ``(step, *values)`` sampled at a stride that doubles when full.

    Args:
        fields: names of the values of each row (the step is implicit).
        capacity: the most rows kept; an even number >= 4.

    Example:
        >>> h = DecimatedHistory(("loss",), capacity=4)
        >>> for step in range(10):
        ...     h.append(step, (float(step),))
        >>> h.steps, h.stride
        ([0, 4, 8], 4)
    """

    def __init__(self, fields: Sequence[str], *, capacity: int = 2048) -> None:
        if capacity < 4 or capacity % 2:
            raise InputError(f"capacity must be an even number >= 4; got {capacity!r}.")
        self.fields = tuple(fields)
        self.capacity = capacity
        self.stride = 1
        self.steps: list[int] = []
        self.rows: list[tuple[float, ...]] = []
        self._seen = 0

    def __len__(self) -> int:
        return len(self.steps)

    def append(self, step: int, values: Sequence[float]) -> None:
        """Offer one row; it is kept when it falls on the current stride."""
        keep = self._seen % self.stride == 0
        self._seen += 1
        if not keep:
            return
        self.steps.append(step)
        self.rows.append(tuple(values))
        if len(self.steps) >= self.capacity:
            self.steps = self.steps[::2]
            self.rows = self.rows[::2]
            self.stride *= 2

    def truncate_from(self, step: int) -> int:
        """Drop the rows at ``step`` and later (a run resumed from an earlier step logs them again).

        Returns:
            How many rows were dropped.
        """
        keep = next((i for i, s in enumerate(self.steps) if s >= step), len(self.steps))
        dropped = len(self.steps) - keep
        del self.steps[keep:], self.rows[keep:]
        return dropped

    def column(self, name: str) -> list[float]:
        """The values of one field, in step order."""
        j = self.fields.index(name)
        return [row[j] for row in self.rows]

    def state_dict(self) -> dict[str, Any]:
        """Plain values (lists, ints, floats) that ``torch.save(weights_only=True)`` accepts."""
        return {"fields": list(self.fields), "capacity": self.capacity, "stride": self.stride,
                "seen": self._seen, "steps": list(self.steps), "rows": [list(r) for r in self.rows]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if list(state["fields"]) != list(self.fields):
            raise InputError(f"history fields differ: saved {list(state['fields'])}, expected {list(self.fields)}.")
        self.capacity = int(state["capacity"])
        self.stride = int(state["stride"])
        self._seen = int(state["seen"])
        self.steps = [int(s) for s in state["steps"]]
        self.rows = [tuple(float(v) for v in r) for r in state["rows"]]
