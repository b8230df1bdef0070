"""Check the plain arguments of public functions: numbers, flags, name lists.

A wrong-type argument must become one :class:`~dldebug.errors.DldebugError`
at the public boundary, not a ``TypeError`` from deep inside numpy. The rules:

- a bool is never a number (``True`` would silently mean 1);
- numbers are Python or numpy scalars, finite (NaN and inf never pass);
- a 0-d tensor or array is refused with a pointer to ``.item()`` (its comparisons
  return tensors, so letting it through only moves the failure);
- every message says what was expected and what was received.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Integral, Real

import numpy as np
import torch

from dldebug.errors import DldebugError, InputError

__all__ = ["flag", "integer", "name_list", "real", "received"]

ErrorType = type[DldebugError]


def received(value: object) -> str:
    """How a received value reads in an error message: ``0.5``, ``'x' (a str)``, ``a Tensor of shape (2,)``.

    Example:
        >>> received(True), received("x"), received(None), received(np.zeros(2))
        ('True (a bool)', "'x' (a str)", 'None', 'an ndarray of shape (2,)')
    """
    if value is None:
        return "None"
    if isinstance(value, (bool, np.bool_)):
        return f"{bool(value)!r} (a bool)"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return repr(value)
    if isinstance(value, (torch.Tensor, np.ndarray)):
        item = " (a number is expected: use .item())" if value.ndim == 0 or math.prod(value.shape) == 1 else ""
        return f"{_article(type(value).__name__)} of shape {tuple(value.shape)}{item}"
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{text} ({_article(type(value).__name__)})"


def _article(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' or noun == 'ndarray' else 'a'} {noun}"


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, (bool, np.bool_))


def real(value: object, requirement: str, *, low: float = -math.inf, high: float = math.inf,
         low_closed: bool = False, high_closed: bool = False, error: ErrorType = InputError) -> float:
    """``value`` as a float when it is a finite number inside the interval, else ``error``.

    Args:
        value: the argument.
        requirement: the first half of the message, e.g. ``"alpha must lie in (0, 1)"``.
        low, high: the interval's ends.
        low_closed, high_closed: whether each end belongs to it.
        error: the error class to raise.

    Returns:
        ``float(value)``.

    Raises:
        DldebugError: ``error`` with ``"{requirement}; got {received(value)}."``.

    Example:
        >>> real(0.5, "alpha must lie in (0, 1)", low=0.0, high=1.0)
        0.5
        >>> real(None, "alpha must lie in (0, 1)", low=0.0, high=1.0)
        Traceback (most recent call last):
        ...
        dldebug.errors.InputError: alpha must lie in (0, 1); got None.
    """
    if _is_number(value):
        number = float(value)  # type: ignore[arg-type]
        above = number >= low if low_closed else number > low
        below = number <= high if high_closed else number < high
        if math.isfinite(number) and above and below:
            return number
    raise error(f"{requirement}; got {received(value)}.")


def integer(value: object, requirement: str, *, low: int = 1, error: ErrorType = InputError) -> int:
    """``value`` as an int when it is a whole number (Python or numpy, not a bool) ``>= low``.

    Raises:
        DldebugError: ``error`` with ``"{requirement}; got {received(value)}."``.

    Example:
        >>> integer(np.int64(3), "steps must be a positive integer")
        3
    """
    if isinstance(value, Integral) and not isinstance(value, (bool, np.bool_)) and int(value) >= low:
        return int(value)
    raise error(f"{requirement}; got {received(value)}.")


def flag(value: object, name: str, *, allow_none: bool = False, error: ErrorType = InputError) -> bool | None:
    """``value`` when it is True or False (or None where allowed); a string such as ``"no"`` is refused.

    Example:
        >>> flag(np.True_, "inplace")
        True
    """
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    allowed = "True, False or None" if allow_none else "True or False"
    raise error(f"{name} must be {allowed}; got {received(value)}.")


def name_list(value: object, name: str, *, what: str = "class names", integers: bool = True,
              error: ErrorType = InputError) -> tuple[str, ...]:
    """A list of names (str, or integers such as ``range(10)`` where allowed) as a tuple of str.

    Args:
        value: a list, tuple or 1-D array of names.
        name: the argument's name, for the message.
        what: what the names are, for the message.
        integers: whether integer entries are names too (class ids); they become str.
        error: the error class to raise.

    Returns:
        The names as str, in order.

    Raises:
        DldebugError: one string, a mapping, a scalar, or an entry that is not a name.

    Example:
        >>> name_list(["cat", "dog"], "dataset_classes")
        ('cat', 'dog')
    """
    if isinstance(value, (str, bytes)):
        raise error(f"{name} must be a list of {what}, not one string.")
    if isinstance(value, Mapping):
        raise error(f"{name} must be a list of {what} in index order; got a mapping. For an id -> name dict "
                    f"(a Hugging Face config.id2label) pass [id2label[i] for i in range(len(id2label))].")
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if not isinstance(value, (Sequence, range)):
        raise error(f"{name} must be a list of {what}; got {received(value)}.")
    names = []
    for index, entry in enumerate(value):
        if isinstance(entry, str):
            names.append(entry)
        elif integers and isinstance(entry, Integral) and not isinstance(entry, (bool, np.bool_)):
            names.append(str(int(entry)))
        else:
            raise error(f"{name}[{index}] must be a name (a str); got {received(entry)}. Pass the {what} as "
                        "strings.")
    return tuple(names)
