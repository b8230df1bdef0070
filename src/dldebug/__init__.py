"""dldebug: find, explain and fix the silent bugs of deep learning.

``import dldebug`` needs only torch and numpy: the analyses are imported on
first use (``dldebug.diagnose_curve`` loads ``dldebug.curves``), and optional
frameworks only inside the modules that need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dldebug.errors import (
    ConfigError,
    DldebugError,
    FileFormatError,
    InputError,
    LayerNotFoundError,
    MissingDependencyError,
    TrainingCheckError,
    UnsafeFileError,
)
from dldebug.findings import CheckResult, Figure, Finding, Report, Series, Severity, Span, Table

__version__ = "0.1.0"

# Public name -> module that defines it; resolved on first access (PEP 562).
_LAZY: dict[str, str] = {
    "diagnose_curve": "dldebug.curves",
    "TrainingMonitor": "dldebug.monitor",
    "probe_equivariance": "dldebug.checks",
    "parameter_audit": "dldebug.checks",
    "can_overfit": "dldebug.checks",
    "OverfitResult": "dldebug.checks",
    "feature_extractor": "dldebug.checks",
    "task_specific_layers": "dldebug.checks",
    "check_model": "dldebug.checks",
    "check_ctc": "dldebug.ctc",
    "check_label_alignment": "dldebug.labels",
    "folder_classes": "dldebug.labels",
    "LabelAlignment": "dldebug.labels",
    "compare_models": "dldebug.compare",
    "Comparison": "dldebug.compare",
    "preflight": "dldebug.preflight",
}
_SUBMODULES = ("checks", "compare", "compress", "ctc", "curves", "io", "labels", "lr", "monitor", "nn",
               "preflight", "report", "testing")

__all__ = [
    "CheckResult",
    "Comparison",
    "ConfigError",
    "DldebugError",
    "Figure",
    "FileFormatError",
    "Finding",
    "InputError",
    "LabelAlignment",
    "LayerNotFoundError",
    "MissingDependencyError",
    "OverfitResult",
    "Report",
    "Series",
    "Severity",
    "Span",
    "Table",
    "TrainingCheckError",
    "TrainingMonitor",
    "UnsafeFileError",
    "__version__",
    "can_overfit",
    "check_ctc",
    "check_label_alignment",
    "check_model",
    "compare_models",
    "diagnose_curve",
    "feature_extractor",
    "folder_classes",
    "parameter_audit",
    "preflight",
    "probe_equivariance",
    "task_specific_layers",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"dldebug.{name}")
    raise AttributeError(f"module 'dldebug' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))


if TYPE_CHECKING:  # static type checkers see the real definitions
    from dldebug.checks import (
        OverfitResult,
        can_overfit,
        check_model,
        feature_extractor,
        parameter_audit,
        probe_equivariance,
        task_specific_layers,
    )
    from dldebug.compare import Comparison, compare_models
    from dldebug.ctc import check_ctc
    from dldebug.curves import diagnose_curve
    from dldebug.labels import LabelAlignment, check_label_alignment, folder_classes
    from dldebug.monitor import TrainingMonitor
    from dldebug.preflight import preflight
