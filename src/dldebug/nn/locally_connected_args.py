"""Argument checks of the locally connected layers: every bad value is refused at construction.

Besides types and ranges, the unshared weights are sized before they are allocated:
``H_out * W_out * C_out * C_in * kH * kW`` values can exceed the machine's memory for
innocent-looking arguments, and torch would otherwise fail deep inside an allocator
(or, with memory over-commit, take minutes touching pages).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, get_args

import torch

from dldebug.errors import ConfigError
from dldebug.untrusted import memory_limit_bytes

__all__ = ["PaddingMode", "check_arguments", "check_weight_memory", "pair", "single"]

PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]
PADDING_MODES: tuple[str, ...] = get_args(PaddingMode)


_MAX_SIZE = 2**31 - 1  # torch's unfold/as_strided take C longs; no real geometry comes near


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_size(value: Any, minimum: int) -> bool:
    return _is_int(value) and minimum <= value <= _MAX_SIZE


def _too_large(values: tuple[Any, ...]) -> str:
    return " Sizes are at most 2**31 - 1." if any(_is_int(v) and v > _MAX_SIZE for v in values) else ""


def pair(value: int | Sequence[int], name: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints in ``[minimum, 2**31)``, as a pair (``ConfigError`` otherwise; bools are no ints)."""
    values = (value, value) if _is_int(value) else tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(values) != 2 or not all(_is_size(v, minimum) for v in values):
        raise ConfigError(f"{name} must be an int >= {minimum} or a pair of them; got {value!r}.{_too_large(values)}")
    return values[0], values[1]


def single(value: int | Sequence[int], name: str, minimum: int) -> tuple[int, int]:
    """A 1-D layer's int as the 2-D pair ``(neutral, value)`` its computation uses."""
    values = (value,) if _is_int(value) else tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(values) != 1 or not _is_size(values[0], minimum):
        raise ConfigError(f"{name} must be an int >= {minimum}; got {value!r}.{_too_large(values)}")
    return (1 if name != "padding" else 0), values[0]


def check_arguments(in_channels: Any, out_channels: Any, bias: Any, padding_mode: Any, max_patch_bytes: Any,
                     factory: dict[str, Any]) -> None:
    """Refuse a bad channel count, bias flag, padding mode, chunk size or dtype (the message lists the allowed)."""
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if not _is_int(value) or value < 1:
            raise ConfigError(f"{name} must be a positive int; got {value!r}.")
    if not isinstance(bias, bool):
        raise ConfigError(f"bias must be True or False; got {bias!r}.")
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        raise ConfigError(
            f"padding_mode must be one of {', '.join(repr(m) for m in PADDING_MODES)}; got {padding_mode!r}."
        )
    if not _is_int(max_patch_bytes) or max_patch_bytes < 1:
        raise ConfigError(f"max_patch_bytes must be a positive int (bytes); got {max_patch_bytes!r}.")
    dtype = factory.get("dtype")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ConfigError(f"dtype must be a floating torch.dtype (torch.float32, torch.bfloat16, ...) or None; "
                          f"got {dtype!r}.")


def check_weight_memory(layer: str, shape: tuple[int, ...], dtype: torch.dtype | None) -> None:
    """Refuse unshared weights larger than this machine's memory before allocating them."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    needed, limit = math.prod(shape) * itemsize, memory_limit_bytes()
    if needed > limit:
        raise ConfigError(f"{layer} with weight shape {shape} needs {needed / 2**30:,.1f} GiB (one filter per output "
                          f"location), more than the {limit / 2**30:,.1f} GiB of memory available. Use fewer "
                          "channels, a smaller input_size or a larger stride.")
