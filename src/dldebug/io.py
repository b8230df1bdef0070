"""Load models and tensors for the CLI — treating every file as untrusted.

Models: ``package.module:factory`` (+ optional weights), a ``torch.export``
``.pt2`` archive, a state dict in ``.safetensors``/``.pt``/``.pth``/``.bin``
(always ``torch.load(..., weights_only=True)``), or an ``.onnx`` file.
Tensors: ``.npy``/``.npz`` (``allow_pickle=False``) and ``.pt`` (weights only).

No code path unpickles arbitrary objects: a pickle that needs more than
tensors and plain containers is refused with :class:`UnsafeFileError`.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import pickle
import sys
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dldebug.errors import FileFormatError, InputError, UnsafeFileError, require
from dldebug.untrusted import (
    UNSAFE_HINT,
    array_to_tensor,
    check_npy_file,
    check_npz_file,
    check_onnx_external_data,
    error_detail,
    torch_load_weights_only,
    unpickling_refusal,
    weights_only_unpickling,
)

__all__ = [
    "OnnxModel",
    "load_factory",
    "load_model",
    "load_model_inputs",
    "load_state_dict",
    "load_tensor",
    "load_tensor_arg",
    "load_tensors",
    "parse_shape",
]

STATE_DICT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


@dataclass(frozen=True)
class OnnxModel:
    """An ONNX model file, checked and ready for onnxruntime."""

    path: Path
    proto: Any  # onnx.ModelProto

    @property
    def input_names(self) -> list[str]:
        initializers = {i.name for i in self.proto.graph.initializer}
        return [i.name for i in self.proto.graph.input if i.name not in initializers]

    def session(self, **options: Any) -> Any:
        """A new ``onnxruntime.InferenceSession`` on the CPU.

        Raises:
            FileFormatError: onnxruntime cannot build a session from the model (an op it lacks, bad types ...).
        """
        ort = require("onnxruntime", extra="onnx", feature="running an ONNX model")
        try:
            return ort.InferenceSession(self.proto.SerializeToString(), providers=["CPUExecutionProvider"],
                                        **options)
        except Exception as exc:  # onnxruntime's Fail, InvalidGraph, NotImplemented ... share no public base
            raise FileFormatError(f"onnxruntime cannot load this model ({error_detail(exc)}).",
                                  path=self.path) from None


def _check_exists(path: Path, what: str) -> None:
    """A readable regular file, or one clear error saying which of those it is not."""
    if not path.exists():
        raise FileFormatError(f"{what} not found. Check the path (working directory: {Path.cwd()}).", path=path)
    if path.is_dir():
        raise FileFormatError(f"{what} is a folder, expected a file.", path=path)
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise FileFormatError(f"{what} cannot be read ({exc.strerror or type(exc).__name__}). Check its "
                              "permissions.", path=path) from None


def load_factory(spec: str) -> Any:
    """Import ``package.module:factory`` and return ``factory()``.

    The current working directory is importable, so ``mymodels:build`` finds
    ``./mymodels.py``.
    """
    if ":" not in spec:
        raise InputError(f"Expected 'package.module:factory', got {spec!r}. Example: 'mymodels:build_cnn'.")
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InputError(f"Expected 'package.module:factory', got {spec!r}. Example: 'mymodels:build_cnn'.")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise InputError(f"Cannot import module {module_name!r} from {spec!r}: {exc}. "
                         "Run from the folder that holds it or install its package.") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            names = sorted(n for n in dir(module) if not n.startswith("_"))[:20]
            raise InputError(f"Module {module_name!r} has no attribute {attr!r}. Names it defines: {names}.")
        target = getattr(target, part)
    if isinstance(target, torch.nn.Module) or not callable(target):
        return target
    return target()


def load_model(spec: str | Path, *, weights: str | Path | None = None) -> torch.nn.Module | OnnxModel:
    """Load a model from a CLI spec.

    Args:
        spec: ``package.module:factory``, a ``.pt2`` archive or an ``.onnx`` file.
        weights: an optional state dict (``.safetensors``/``.pt``) loaded into a factory's model.

    Returns:
        An ``nn.Module`` in eval mode, or an :class:`OnnxModel`.

    Raises:
        FileFormatError: missing, corrupt or unsupported file.
        UnsafeFileError: a file that would need arbitrary unpickling.
    """
    text = str(spec)
    path = Path(text)
    suffix = path.suffix.lower()
    if suffix in (".pt2", ".onnx", *STATE_DICT_SUFFIXES) or path.exists():
        _check_exists(path, "Model file")
        if suffix == ".pt2":
            model: Any = _load_exported(path)
        elif suffix == ".onnx":
            if weights is not None:
                raise InputError("--weights applies to a 'module:factory' model, not to an .onnx file.")
            return _load_onnx(path)
        elif suffix in STATE_DICT_SUFFIXES:
            load_state_dict(path)  # validates the file first, so a corrupt one is named as such
            raise InputError(
                f"{path} holds weights only (a state dict), not an architecture. Give the architecture as "
                f"'package.module:factory' and the file with --weights {path}."
            )
        else:
            raise FileFormatError(f"unsupported model file type {suffix!r}; expected .pt2, .onnx, or a "
                                  "'package.module:factory' spec with --weights FILE.", path=path)
    else:
        model = load_factory(text)
        if not isinstance(model, torch.nn.Module):
            raise InputError(f"{text} returned {type(model).__name__}, expected a torch.nn.Module.")
    if weights is not None:
        state = load_state_dict(weights)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0:3]
            raise InputError(f"Weights in {weights} do not fit the model from {spec}: {' '.join(first)}") from None
    with contextlib.suppress(NotImplementedError):  # torch.export modules carry their mode in the graph
        model.eval()
    return model


def _load_exported(path: Path) -> torch.nn.Module:
    data = path.read_bytes()
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise FileFormatError("not a torch.export archive (not a zip file; truncated or corrupt?). "
                              "Create one with torch.export.save(torch.export.export(model, args), path).",
                              path=path)
    with _captured_export_logs() as logged:
        try:
            with weights_only_unpickling():
                return torch.export.load(io.BytesIO(data)).module()
        except pickle.UnpicklingError as exc:
            refusal = unpickling_refusal(exc)
            if refusal is not None:
                raise UnsafeFileError(f"refused to load: {refusal}. {UNSAFE_HINT}", path=path) from None
            cause: BaseException = exc
        except Exception as exc:  # torch raises many types for damaged archives
            cause = exc
    first = next((record.exc_info[1] for record in logged if record.exc_info and record.exc_info[1]), cause)
    raise FileFormatError(f"cannot read the torch.export archive ({error_detail(first)}). Is it truncated or "
                          "from an incompatible torch version?", path=path) from None


@contextlib.contextmanager
def _captured_export_logs() -> Iterator[list[logging.LogRecord]]:
    """Keep torch.export's own warnings (tracebacks of a failed load) off the user's terminal, for our message.

    A logger-level filter sees each record before any handler (torch installs its own) and drops it.
    """
    records: list[logging.LogRecord] = []

    def keep(record: logging.LogRecord) -> bool:
        records.append(record)
        return False

    loggers = [logging.getLogger(name) for name in ("torch.export", "torch._export.serde.serialize")]
    for logger in loggers:
        logger.addFilter(keep)
    try:
        yield records
    finally:
        for logger in loggers:
            logger.removeFilter(keep)


def _load_onnx(path: Path) -> OnnxModel:
    onnx = require("onnx", extra="onnx", feature="loading an .onnx model")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise FileFormatError(f"not a valid ONNX model ({error_detail(exc)}).", path=path) from None
    if check_onnx_external_data(proto, path):  # every location checked before a byte of it is read
        from onnx.external_data_helper import load_external_data_for_model

        try:
            load_external_data_for_model(proto, str(path.parent))
        except Exception as exc:
            raise FileFormatError(f"cannot read the model's external data ({error_detail(exc)}).", path=path) from None
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise FileFormatError(f"not a valid ONNX model ({error_detail(exc)}).", path=path) from None
    return OnnxModel(path, proto)


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict from ``.safetensors`` or a weights-only torch file.

    A checkpoint dict holding the weights under ``"state_dict"`` or ``"model"``
    (Lightning, common training scripts) is unwrapped.
    """
    path = Path(path)
    _check_exists(path, "Weights file")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise FileFormatError(f"not a valid safetensors file ({exc}).", path=path) from None
    obj = torch_load_weights_only(path)
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise FileFormatError(f"expected a state dict (names -> tensors), got {type(obj).__name__}.", path=path)
    return {str(k): v for k, v in obj.items()}


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors in ``.npy`` (key ``"x"``), ``.npz`` or ``.pt`` (a tensor or a dict of tensors)."""
    path = Path(path)
    _check_exists(path, "Tensor file")
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        return _load_numpy(path, suffix)
    if suffix in (".pt", ".pth"):
        obj = torch_load_weights_only(path)
        if isinstance(obj, torch.Tensor):
            return {"x": obj}
        if isinstance(obj, Mapping) and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {str(k): v for k, v in obj.items()}
        if isinstance(obj, (list, tuple)) and all(isinstance(v, torch.Tensor) for v in obj):
            return {str(i): v for i, v in enumerate(obj)}
        raise FileFormatError(f"expected a tensor or a dict of tensors, got {type(obj).__name__}.", path=path)
    raise FileFormatError(f"unsupported tensor file type {suffix!r}; expected .npy, .npz or .pt.", path=path)


def _load_numpy(path: Path, suffix: str) -> dict[str, torch.Tensor]:
    (check_npy_file if suffix == ".npy" else check_npz_file)(path)  # a forged header allocates nothing
    try:
        loaded = np.load(str(path), allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"x": array_to_tensor(loaded, "x", path)}
        with loaded:
            return {k: array_to_tensor(loaded[k], k, path) for k in loaded.files}
    except FileFormatError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise UnsafeFileError(f"refused: the array file holds pickled objects. {UNSAFE_HINT}",
                                  path=path) from None
        raise FileFormatError(f"corrupt or truncated numpy file ({exc}).", path=path) from None
    except Exception as exc:  # zipfile, zlib and numpy's parser raise many types for damaged files
        raise FileFormatError(f"corrupt or truncated numpy file ({error_detail(exc)}).", path=path) from None


def load_tensor(path: str | Path, key: str | None = None) -> torch.Tensor:
    """One tensor from a file; ``key`` picks one from an ``.npz`` or a dict ``.pt``."""
    tensors = load_tensors(path)
    if not tensors:
        raise FileFormatError("holds no array; save at least one (np.savez(path, x=array)).", path=path)
    if key is None:
        if len(tensors) == 1:
            return next(iter(tensors.values()))
        raise InputError(f"{path} holds {len(tensors)} arrays {sorted(tensors)}; choose one with a key "
                         f"(CLI: FILE:KEY, e.g. {path}:{sorted(tensors)[0]}).")
    if key not in tensors:
        raise InputError(f"{path} has no array {key!r}; it holds {sorted(tensors)}.")
    return tensors[key]


def parse_shape(text: str) -> tuple[int, ...]:
    """Parse ``"1x3x224x224"`` or ``"1,3,224,224"`` into a shape tuple."""
    parts = text.replace("x", ",").replace("X", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts if p.strip())
    except ValueError:
        raise InputError(f"Cannot parse input shape {text!r}; write it as 1x3x32x32 (or a .npy/.pt file).") from None
    if not shape or any(d <= 0 for d in shape):
        raise InputError(f"Input shape {text!r} must have positive sizes, e.g. 1x3x32x32.")
    return shape


def _tensor_file_spec(text: str) -> tuple[str, str | None] | None:
    """``(path, key)`` when ``text`` names a tensor file (``FILE`` or ``FILE:KEY``), else None."""
    candidate = Path(text)
    if candidate.suffix.lower() in (".npy", ".npz", ".pt", ".pth") or candidate.exists():
        return text, None
    head, sep, key = text.rpartition(":")
    if sep and head and Path(head).suffix.lower() in (".npz", ".pt", ".pth"):
        return head, key
    return None


def load_tensor_arg(text: str) -> torch.Tensor:
    """A CLI tensor argument that must be a file: ``FILE`` or ``FILE:KEY`` (an array of an .npz/.pt)."""
    path, key = _tensor_file_spec(text) or (text, None)
    return load_tensor(path, key)


def load_input(text: str, *, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    """A CLI ``--input``: a shape (random normal, seeded), ``FILE`` or ``FILE:KEY``."""
    spec = _tensor_file_spec(text)
    if spec is not None:
        return load_tensor(*spec)
    shape = parse_shape(text)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=dtype)


def load_model_inputs(text: str, *, dtype: torch.dtype = torch.float32, seed: int = 0) -> Any:
    """A CLI ``--input`` for any model: a shape, ``FILE:KEY``, or ``FILE``.

    A file holding several arrays (an ``.npz`` or a dict ``.pt``) without a key becomes a dict of
    keyword arguments with their dtypes kept -- ``{"input_ids": ..., "attention_mask": ...}`` for a
    Hugging Face model (``np.savez("batch.npz", input_ids=ids, attention_mask=mask)``); one array
    is the model's single input. A shape gives seeded random normal values (float models only).
    """
    spec = _tensor_file_spec(text)
    if spec is None:
        return load_input(text, dtype=dtype, seed=seed)
    path, key = spec
    if key is not None:
        return load_tensor(path, key)
    tensors = load_tensors(path)
    return next(iter(tensors.values())) if len(tensors) == 1 else tensors
