"""Load either model of a comparison from a CLI spec: PyTorch, ONNX, tf_keras and Keras 3 files.

Keras files are read by the library that wrote them (the version in the file's
metadata): ``.keras`` archives and ``.h5`` files of Keras 3 with ``keras``, those of
Keras 2 (tf_keras) with ``tf_keras``; a SavedModel folder with ``tf_keras``. Before
any loader runs, the file's model configuration is read and refused when it names a
``Lambda`` layer (Python bytecode) or a class outside Keras (CVE-2025-1550), and an
HDF5 file is probed in a child process with a time limit, since a damaged one hangs
h5py for ever (:mod:`dldebug.compare.keras_files`).
``module:factory`` may return any model :func:`~dldebug.compare_models` takes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dldebug.compare.keras_files import LAMBDA_REFUSED, keras_archive_facts, probe_hdf5, scan_config
from dldebug.errors import FileFormatError, InputError, UnsafeFileError, require

__all__ = ["KERAS_SUFFIXES", "is_supported_model", "load_compare_model"]

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def is_supported_model(model: Any) -> bool:
    """A torch module, an ONNX model or a Keras (tf_keras / Keras 3) model."""
    import torch

    if isinstance(model, torch.nn.Module) or type(model).__name__ in ("OnnxModel", "ModelProto"):
        return True
    return type(model).__module__.startswith(("keras", "tf_keras", "tensorflow")) and hasattr(model, "layers")


def load_compare_model(spec: str | Path, *, weights: str | Path | None = None) -> Any:
    """A model for :func:`~dldebug.compare_models` from ``module:factory``, ``.pt2``, ``.onnx``, a Keras
    ``.keras``/``.h5`` file or a SavedModel folder.

    Raises:
        FileFormatError: missing, corrupt or unsupported file; an HDF5 file that cannot be read within
            :data:`~dldebug.compare.keras_files.H5_PROBE_SECONDS` (damaged files hang h5py).
        UnsafeFileError: a Keras file naming a Lambda layer or a class outside Keras.
        InputError: a factory returning something that is not a model.
        MissingDependencyError: Keras/ONNX not installed (an ``ImportError``).
    """
    path = Path(str(spec))
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return _load_saved_model(path)
    if path.suffix.lower() in KERAS_SUFFIXES:
        if not path.is_file():
            raise FileFormatError(f"Keras model file not found (working directory: {Path.cwd()}).", path=path)
        return _load_keras_file(path)
    from dldebug.io import load_factory, load_model

    if path.exists() or path.suffix.lower() in (".pt2", ".onnx", ".pt", ".pth", ".safetensors") or ":" not in str(spec):
        return load_model(spec, weights=weights)
    model = load_factory(str(spec))
    import torch

    if isinstance(model, torch.nn.Module):
        return load_model(spec, weights=weights)  # weights and eval mode handled there
    if not is_supported_model(model):
        raise InputError(f"{spec} returned {type(model).__module__}.{type(model).__name__}; expected a "
                         "torch.nn.Module, an ONNX model or a Keras model (tf_keras or Keras 3).")
    if weights is not None:
        raise InputError("--weights applies to a PyTorch 'module:factory' model; this factory returned a "
                         f"{type(model).__name__}. Load the weights in the factory.")
    return model


def _keras_facts(path: Path) -> str:
    """The Keras version that wrote the file ("" when it does not say), after the safety checks.

    A ``.keras`` archive's config is scanned and its weights probed; an ``.h5`` file is probed in a
    child process (a damaged one can hang h5py forever) and its model config scanned.
    """
    if path.suffix.lower() == ".keras":
        return str(keras_archive_facts(path).get("keras_version", ""))
    facts = probe_hdf5(path)
    if facts["model_config"]:
        try:
            config = json.loads(facts["model_config"])
        except (ValueError, RecursionError):
            raise FileFormatError("the .h5 file's model_config is not valid JSON: is it a Keras model file saved "
                                  "by model.save()?", path=path) from None
        scan_config(config, path)
    return facts["keras_version"]


def _load_keras_file(path: Path) -> Any:
    version = _keras_facts(path)
    legacy = version.startswith("2.")
    library = "tf_keras" if legacy else "keras"
    keras = require(library, extra="keras", feature="loading a Keras model")
    try:
        if legacy and path.suffix.lower() != ".keras":
            return keras.models.load_model(str(path), compile=False)
        return keras.models.load_model(str(path), compile=False, safe_mode=True)
    except UnsafeFileError:
        raise
    except Exception as exc:
        text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        if "safe_mode" in str(exc) or "unsafe" in str(exc).lower():
            raise UnsafeFileError(f"{LAMBDA_REFUSED}: {text}", path=path) from None
        raise FileFormatError(f"cannot read the Keras model with {library} ({type(exc).__name__}: {text}). Is it "
                              "a .keras/.h5 file saved by model.save()?", path=path) from None


def _load_saved_model(path: Path) -> Any:
    metadata = path / "keras_metadata.pb"
    if metadata.is_file() and b'"class_name": "Lambda"' in metadata.read_bytes():
        raise UnsafeFileError(f"{LAMBDA_REFUSED}; SavedModel folders have no safe mode.", path=path)
    keras = require("tf_keras", extra="keras", feature="loading a Keras SavedModel folder")
    try:
        return keras.models.load_model(str(path), compile=False)
    except Exception as exc:
        text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise FileFormatError(f"cannot read the SavedModel folder as a tf_keras model ({type(exc).__name__}: "
                              f"{text}). Save it with tf_keras model.save(folder), or as .keras/.h5.",
                              path=path) from None
