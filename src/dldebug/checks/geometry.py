"""How an input transform maps onto each layer's output: feature maps, token grids, flat vectors.

A shift of ``s`` pixels at the input is ``s * h / H`` positions at a layer whose map is ``h`` wide
for an input ``H`` wide; where that is not a whole number the layer cannot be shift-equivariant.
Patch models (ViT) turn the image into a token sequence ``(N, T, D)``: when ``T`` minus a few
leading tokens (the class token) is an ``h x w`` grid with the input's aspect ratio, the grid is
transformed and the leading tokens must stay put; a sequence that is no grid is skipped, saying so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import torch

from dldebug.errors import InputError
from dldebug.model_io import describe

__all__ = ["Cell", "Layout", "Probe", "SpatialInput", "expected_output", "layout", "norm", "relative_error"]

MAX_PREFIX_TOKENS = 2  # class token, distillation token (DeiT)


@dataclass(frozen=True)
class Probe:
    """One input transform: a circular shift of ``shift`` pixels, a horizontal flip or a rotation."""

    transform: str
    shift: int = 0

    @property
    def label(self) -> str:
        return f"translate {self.shift}" if self.transform == "translate" else self.transform


@dataclass
class Cell:
    """One layer under one probe: the relative error, or why the layer cannot be compared or equivariant."""

    error: float | None
    cannot: str = ""  # non-empty: the layer cannot be equivariant (why)
    collapsed: bool = False  # no spatial layout left (flattened or pooled to one position)
    skipped: str = ""  # non-empty: not comparable (a padded map, a sequence that is no grid)

    def broken(self, tolerance: float, task: str) -> bool:
        if self.skipped:
            return False
        if self.cannot:
            return True
        if self.collapsed and task == "dense":
            return True
        return self.error is not None and self.error > tolerance

    def text(self) -> float | str:
        if self.skipped:
            return f"n/a ({self.skipped})"
        return f"cannot ({self.cannot})" if self.cannot else (self.error or 0.0)


@dataclass(frozen=True)
class Layout:
    """Where a layer's output keeps the input's spatial axes.

    ``kind``: ``"map"`` (``(N, C, *grid)``), ``"tokens"`` (``(N, prefix + h*w, D)``), ``"pooled"``
    (a map of one position), ``"flat"`` (no spatial axes) or ``"other"`` (not comparable: ``reason``).
    """

    kind: Literal["map", "tokens", "pooled", "flat", "other"]
    grid: tuple[int, ...] = ()
    prefix: int = 0
    reason: str = ""

    @property
    def collapsed(self) -> bool:
        return self.kind in ("pooled", "flat")


def _token_grid(tokens: int, height: int, width: int) -> tuple[int, int, int] | None:
    """``(prefix, h, w)`` with ``h * w == tokens - prefix`` and ``h / w == height / width``, else None."""
    for prefix in range(MAX_PREFIX_TOKENS + 1):
        count = tokens - prefix
        if count <= 0:
            return None
        h = round(math.sqrt(count * height / width))
        if h > 0 and count % h == 0 and Fraction(height, h) == Fraction(width, count // h):
            return prefix, h, count // h
    return None


def layout(y: torch.Tensor, x: torch.Tensor) -> Layout:
    """The layout of layer output ``y`` for the spatial input ``x`` (``(N, C, *spatial)``)."""
    if y.dim() == 0 or y.shape[0] != x.shape[0]:
        return Layout("other", reason=f"shape {tuple(y.shape)} has no batch axis")
    if y.dim() == x.dim():
        grid = tuple(y.shape[2:])
        if all(d == 1 for d in grid) and any(d > 1 for d in x.shape[2:]):
            return Layout("pooled", grid)
        return Layout("map", grid)
    if y.dim() == 3 and x.dim() == 4:
        found = _token_grid(int(y.shape[1]), int(x.shape[2]), int(x.shape[3]))
        if found is None:
            return Layout("other", reason=f"{y.shape[1]} tokens are no grid of the {x.shape[2]}x{x.shape[3]} input")
        prefix, h, w = found
        return Layout("tokens", (h, w), prefix)
    if y.dim() <= 2:
        return Layout("flat")
    return Layout("other", reason=f"shape {tuple(y.shape)} has no layout matching the input's")


def _moves(grid: tuple[int, ...], spatial: tuple[int, ...], shift: int) -> tuple[int, ...] | str:
    """The shift in positions of ``grid`` for ``shift`` input pixels, or the fraction that makes it impossible."""
    moves = []
    for size, full in zip(grid, spatial, strict=True):
        move = Fraction(shift * size, full) if size > 1 else Fraction(0)
        if move.denominator != 1:
            return f"{move} px"
        moves.append(int(move))
    return tuple(moves)


def _transform_grid(grid: torch.Tensor, dims: tuple[int, ...], probe: Probe, moves: tuple[int, ...]) -> torch.Tensor:
    if probe.transform == "hflip":
        return grid.flip(dims[-1])
    if probe.transform == "rot90":
        return torch.rot90(grid, 1, dims=(dims[-2], dims[-1]))
    return torch.roll(grid, shifts=moves, dims=dims)


def expected_output(y: torch.Tensor, x: torch.Tensor, probe: Probe) -> torch.Tensor | Cell:
    """``T'`` applied to ``y`` (a layer output at its own resolution); a Cell when T' does not exist."""
    where = layout(y, x)
    if where.kind == "other":
        return Cell(None, skipped=where.reason)
    if where.collapsed:
        return y  # no spatial layout left: the best it can be is invariant
    if probe.transform == "rot90" and len(set(where.grid[-2:])) != 1:
        return Cell(None, cannot="map is not square")
    moves = _moves(where.grid, tuple(x.shape[2:]), probe.shift) if probe.transform == "translate" else ()
    if isinstance(moves, str):
        return Cell(None, cannot=moves)
    if where.kind == "map":
        return _transform_grid(y, tuple(range(2, y.dim())), probe, moves)
    n, _, d = y.shape
    h, w = where.grid
    grid = _transform_grid(y[:, where.prefix:].reshape(n, h, w, d), (1, 2), probe, moves)
    return torch.cat([y[:, :where.prefix], grid.reshape(n, h * w, d)], dim=1)


def norm(t: torch.Tensor) -> float:
    # float32 accumulation (cascade-summed by torch) is ~10x faster than float64 and accurate to ~1e-7
    return float(torch.linalg.vector_norm(t, dtype=torch.float32 if t.element_size() < 4 else None))


def relative_error(actual: torch.Tensor, expected: torch.Tensor, *, scale: float | None = None,
                   scratch: bool = False) -> float:
    """||actual - expected|| / ||expected||; ``scratch``: ``expected`` is a temporary that may be overwritten.

    The transforms only permute entries, so ``scale`` = ||f(x)|| (computed once per layer) = ||T'f(x)||.
    """
    scale = norm(expected) if scale is None else scale
    diff = norm(expected.sub_(actual) if scratch else expected - actual)
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


def _is_spatial(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() >= 3 and value.is_floating_point()


@dataclass(frozen=True)
class SpatialInput:
    """The model's inputs and the one spatial tensor among them that the probes transform.

    ``where``: None (the inputs are that tensor), a position (tuple inputs) or a key (dict inputs,
    e.g. ``"pixel_values"``).
    """

    inputs: Any
    where: int | str | None
    x: torch.Tensor

    @classmethod
    def find(cls, inputs: Any, *, tool: str = "probe_equivariance") -> SpatialInput:
        """Locate the first floating tensor with spatial axes: the tensor itself, in a tuple, or in a dict.

        Raises:
            InputError: there is none.
        """
        if isinstance(inputs, torch.Tensor) and _is_spatial(inputs):
            return cls(inputs, None, inputs)
        if isinstance(inputs, Mapping):
            key = next((k for k, v in inputs.items() if _is_spatial(v)), None)
            if key is not None:
                return cls(dict(inputs), str(key), inputs[key])
        elif isinstance(inputs, (tuple, list)):
            index = next((i for i, v in enumerate(inputs) if _is_spatial(v)), None)
            if index is not None:
                return cls(tuple(inputs), index, inputs[index])
        raise InputError(f"{tool} needs a floating batch (N, C, H, W) or (N, C, L); got {describe(inputs)}. "
                         "Pass a few real input images as a float tensor (or a dict/tuple of inputs holding one).")

    def with_x(self, x: torch.Tensor) -> Any:
        """The inputs with the spatial tensor replaced by ``x``."""
        if self.where is None:
            return x
        if isinstance(self.where, str):
            return {**self.inputs, self.where: x}
        return tuple(x if i == self.where else v for i, v in enumerate(self.inputs))

    @property
    def name(self) -> str:
        """How the report names the transformed input: ``"x"``, ``"pixel_values"``, ``"inputs[0]"``."""
        return "x" if self.where is None else self.where if isinstance(self.where, str) else f"inputs[{self.where}]"
