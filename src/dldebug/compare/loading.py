"""Load either model of a comparison from a CLI spec, Keras files included (always with safe_mode)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dldebug.errors import FileFormatError, UnsafeFileError, require

__all__ = ["KERAS_SUFFIXES", "load_compare_model"]

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def load_compare_model(spec: str | Path, *, weights: str | Path | None = None) -> Any:
    """A model for :func:`~dldebug.compare_models` from ``module:factory``, ``.pt2``, ``.onnx`` or ``.keras``/``.h5``.

    Keras files load with ``safe_mode=True``: a ``Lambda`` layer holding Python
    bytecode is refused rather than executed.

    Raises:
        FileFormatError: missing, corrupt or unsupported file.
        UnsafeFileError: a Keras file that would need to run embedded code.
        MissingDependencyError: Keras/ONNX not installed (an ``ImportError``).
    """
    path = Path(str(spec))
    if path.suffix.lower() not in KERAS_SUFFIXES:
        from dldebug.io import load_model

        return load_model(spec, weights=weights)
    if not path.is_file():
        raise FileFormatError(f"Keras model file not found (working directory: {Path.cwd()}).", path=path)
    keras = require("keras", extra="keras", feature="loading a Keras model")
    try:
        return keras.models.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:
        text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        if "safe_mode" in str(exc) or "unsafe" in str(exc).lower():
            raise UnsafeFileError(f"refused to load: the Keras file holds Python code (a Lambda layer): {text}",
                                  path=path) from None
        raise FileFormatError(f"cannot read the Keras model ({type(exc).__name__}: {text}). Is it a "
                              ".keras/.h5 file saved by model.save()?", path=path) from None
