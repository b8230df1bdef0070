"""The one error hierarchy of dldebug.

Every error a user can trigger derives from :class:`DldebugError` and from the
builtin it resembles, so ``except ValueError`` keeps working in user code. The
CLI turns any of them into one message and exit status 2.

Messages follow scikit-learn's rule: what is wrong, what was received, and how
to fix it.
"""

from __future__ import annotations

from pathlib import Path


class DldebugError(Exception):
    """Base class of every error dldebug raises on purpose."""


class InputError(DldebugError, ValueError):
    """An argument has the wrong shape, type, value or content (NaN, empty ...)."""


class ConfigError(DldebugError, ValueError):
    """A combination of options is invalid (the message lists the allowed values)."""


class LayerNotFoundError(DldebugError, KeyError):
    """A layer name does not exist in the model; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class FileFormatError(DldebugError, ValueError):
    """A file is missing, truncated, corrupt or of an unsupported format."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(where + message)
        self.path = None if path is None else Path(path)
        self.line = line


class UnsafeFileError(FileFormatError):
    """A file would need arbitrary code execution (a pickle) to load; refused."""


class MissingDependencyError(DldebugError, ImportError):
    """An optional framework is not installed; the message names the extra."""

    def __init__(self, package: str, extra: str, feature: str):
        self.package = package
        self.extra = extra
        self.feature = feature
        super().__init__(
            f"{feature} needs the optional package '{package}', which is not installed. "
            f"Install it with: pip install 'dldebug[{extra}]'"
        )

    def __str__(self) -> str:
        return str(self.args[0])


class TrainingCheckError(DldebugError, RuntimeError):
    """A strict-mode check found a problem inside a training loop."""


def require(module: str, *, extra: str, feature: str, package: str | None = None):
    """Import an optional module or raise :class:`MissingDependencyError`.

    Args:
        module: the module to import, e.g. ``"onnxruntime"``.
        extra: the dldebug extra that installs it, e.g. ``"onnx"``.
        feature: what needs it, for the message, e.g. ``"dldebug compare"``.
        package: the pip package name when it differs from the module name.

    Returns:
        The imported module.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(package or module, extra, feature) from None
