"""Weight verdicts of layer pairs, remembered by the weights' content.

Comparing the same two models again re-reads their weights, but the verdicts on them
(``weight_relation``, a folded BatchNorm's check) only change when a weight or a
setting does. Each runner gives its records a ``params_digest`` (CRC-32 and Adler-32
of every weight array, with shapes and dtypes); a verdict is reused only when every
digest it depends on, the layers' kinds and layouts and the settings it reads are
equal. A record without a digest is always checked afresh.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

import numpy as np

from dldebug.compare.records import LayerRecord

__all__ = ["params_digest", "remembered", "weights_digest"]

T = TypeVar("T")
_KEEP = 4096
_LOCK = threading.Lock()
_VERDICTS: OrderedDict[Hashable, Any] = OrderedDict()


def weights_digest(arrays: Iterable[np.ndarray]) -> str:
    """A content digest of weight arrays (order, shapes, dtypes and bytes).

    Example:
        >>> weights_digest([np.ones(3, np.float32)]) == weights_digest([np.ones(3, np.float32)])
        True
        >>> weights_digest([np.ones(3, np.float32)]) == weights_digest([np.full(3, 2, np.float32)])
        False
    """
    parts = []
    for array in arrays:
        data = np.ascontiguousarray(array)
        view = data.reshape(-1).view(np.uint8).data  # the bytes, without a copy
        parts.append(f"{data.dtype}{data.shape}:{zlib.crc32(view)}:{zlib.adler32(view)}")
    return "|".join(parts)


def params_digest(params: dict[str, np.ndarray]) -> str:
    """:func:`weights_digest` of a record's ``params``, names included ("" when there are none)."""
    return f"{','.join(params)}|{weights_digest(params.values())}" if params else ""


def remembered(what: str, records: tuple[LayerRecord, ...], extra: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``, or its earlier result for the same records' weights, kinds, layouts and ``extra``."""
    if not all(r.params_digest for r in records):
        return compute()
    key = (what, extra, *((r.params_digest, r.kind, r.type_name, r.layout) for r in records))
    with _LOCK:
        if key in _VERDICTS:
            _VERDICTS.move_to_end(key)
            return _VERDICTS[key]  # type: ignore[no-any-return]
    value = compute()
    with _LOCK:
        _VERDICTS[key] = value
        while len(_VERDICTS) > _KEEP:
            _VERDICTS.popitem(last=False)
    return value
