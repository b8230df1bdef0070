"""Layers PyTorch lacks, and checked drop-ins for ones it has.

Imported lazily, so ``import dldebug.nn`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY: dict[str, str] = {
    "LocallyConnected1d": "dldebug.nn.locally_connected",
    "LocallyConnected2d": "dldebug.nn.locally_connected",
    "DeepFace": "dldebug.nn.deepface",
    "CheckedCTCLoss": "dldebug.nn.ctc_loss",
}

__all__ = ["CheckedCTCLoss", "DeepFace", "LocallyConnected1d", "LocallyConnected2d"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dldebug.nn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from dldebug.nn.ctc_loss import CheckedCTCLoss
    from dldebug.nn.deepface import DeepFace
    from dldebug.nn.locally_connected import LocallyConnected1d, LocallyConnected2d
