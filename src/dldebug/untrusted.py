"""Guards for reading untrusted files: what a file claims is checked before a library acts on it.

- numpy: a ``.npy`` header (alone or inside an ``.npz``) must describe no more bytes
  than the file holds, and no more than this machine's memory, so a forged header
  cannot make numpy allocate terabytes; only dtypes torch has become tensors.
- torch: ``torch.load(weights_only=True)`` on damaged bytes raises nearly any
  exception type; every one becomes a :class:`FileFormatError`, a refusal to
  unpickle an object an :class:`UnsafeFileError`. Inside :func:`weights_only_unpickling`
  (used for ``.pt2`` archives) no code path can unpickle arbitrary objects.
- ONNX: every external-data location must name a regular file inside the model's
  folder (symbolic links resolved), with offset and length inside that file --
  checked before any byte of it is read.

Never a library's own protection alone: older onnx/onnxruntime releases followed
``../`` and symbolic links, and older torch releases defaulted to full unpickling.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from dldebug.errors import FileFormatError, UnsafeFileError

__all__ = [
    "UNSAFE_HINT",
    "array_to_tensor",
    "check_npy_file",
    "check_npz_file",
    "check_onnx_external_data",
    "error_detail",
    "memory_limit_bytes",
    "torch_load_weights_only",
    "unpickler_reason",
    "unpickling_refusal",
    "weights_only_unpickling",
]

UNSAFE_HINT = (
    "dldebug never unpickles arbitrary objects. Save weights with "
    "torch.save(model.state_dict(), path) or safetensors, or the model with torch.export.save."
)
_TORCH_KINDS = "biufc"  # bool, signed, unsigned, float, complex
_UNSAFE_PICKLE = re.compile(r"global|class|reduce|function|object|persistent_load", re.IGNORECASE)


def memory_limit_bytes() -> int:
    """The memory this process may use: the machine's physical memory, or a lower address-space limit.

    A size a file or an argument claims is checked against it before anything is allocated, so a forged
    header or a typo (``out_channels=10**9``) is refused at once instead of exhausting the machine.
    """
    limit = 2**63
    with contextlib.suppress(AttributeError, OSError, ValueError):  # not POSIX: no limit known
        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    with contextlib.suppress(ImportError, OSError, ValueError):
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            limit = min(limit, soft)
    return limit


# -- numpy ---------------------------------------------------------------------------------------------


def _npy_claim(handle: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype an ``.npy`` header claims; the handle is left just after the header."""
    try:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read_header(handle)
    except Exception as exc:  # numpy parses the header with tokenize and literal_eval: any type escapes
        raise FileFormatError(f"corrupt or truncated numpy file (bad array header: {error_detail(exc)}).") from None
    return shape, dtype


def _check_claim(shape: tuple[int, ...], dtype: np.dtype, available: int, what: str) -> None:
    if dtype.hasobject:
        return  # np.load(allow_pickle=False) refuses these itself
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > available:
        raise FileFormatError(f"{what}'s header claims shape {shape} of {dtype} ({claimed:,} bytes) but only "
                              f"{available:,} bytes follow it: the file is truncated or its header is forged.")
    memory = memory_limit_bytes()
    if claimed > memory:
        raise FileFormatError(f"{what} would need {claimed / 2**30:.1f} GiB, more than this machine's "
                              f"{memory / 2**30:.1f} GiB of memory.")


def check_npy_file(path: Path) -> None:
    """Refuse an ``.npy`` file whose header claims more data than the file (or the memory) holds."""
    with path.open("rb") as handle:
        try:
            shape, dtype = _npy_claim(handle)
        except FileFormatError as exc:
            raise FileFormatError(str(exc), path=path) from None
        available = path.stat().st_size - handle.tell()
        try:
            _check_claim(shape, dtype, available, "the array")
        except FileFormatError as exc:
            raise FileFormatError(str(exc), path=path) from None


def check_npz_file(path: Path) -> None:
    """The same check for every array of an ``.npz``; the zip directory's sizes bound each member."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as member:
                    shape, dtype = _npy_claim(member)
                    _check_claim(shape, dtype, info.file_size - member.tell(), f"array {info.filename[:-4]!r}")
    except FileFormatError as exc:
        raise FileFormatError(str(exc), path=path) from None
    except Exception as exc:  # zipfile and zlib raise many types for damaged archives
        raise FileFormatError(f"corrupt or truncated numpy file ({error_detail(exc)}).", path=path) from None


def array_to_tensor(array: np.ndarray, name: str, path: Path) -> torch.Tensor:
    """A tensor with the array's values, shape and dtype (any byte order; 0-d arrays stay 0-d).

    Raises:
        FileFormatError: a dtype torch has no equivalent for (text, dates, records, long double).
    """
    dtype = array.dtype
    if dtype.kind not in _TORCH_KINDS or dtype.itemsize > (16 if dtype.kind == "c" else 8):
        raise FileFormatError(f"array {name!r} has dtype {dtype} ({_kind_name(dtype)}), which torch cannot hold; "
                              "save numbers (float32, int64, bool, ...) instead.", path=path)
    native = array.astype(dtype.newbyteorder("="), copy=False)
    return torch.from_numpy(native if native.flags.c_contiguous else native.copy(order="C"))


def _kind_name(dtype: np.dtype) -> str:
    names = {"U": "text", "S": "bytes", "M": "dates", "m": "time spans", "V": "records", "O": "Python objects"}
    return names.get(dtype.kind, "long double" if dtype.kind in "fc" else dtype.kind)


# -- torch -------------------------------------------------------------------------------------------------
def error_detail(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 200 characters), for an error that wraps ``exc``."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


_BOILERPLATE = ("Weights only load failed", "(1)", "(2)", "Please file an issue", "Check the documentation")


def unpickler_reason(exc: pickle.UnpicklingError) -> str:
    """The one meaningful line of torch's weights-only error (its advice to load unsafely left out)."""
    for line in str(exc).splitlines():
        line = line.strip().removeprefix("WeightsUnpickler error:").strip()
        if line and not line.startswith(_BOILERPLATE):
            return line.split(". Please use")[0].rstrip(".")[:200]
    return "unreadable pickle"


def unpickling_refusal(exc: pickle.UnpicklingError) -> str | None:
    """Why the weights-only unpickler refused an object (a global, a class, a reduce call), or None.

    None means the pickle is merely damaged (or of a protocol torch cannot read): torch raises the
    same exception type for both.
    """
    reason = unpickler_reason(exc)
    return reason if _UNSAFE_PICKLE.search(reason) else None


def torch_load_weights_only(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, every failure one clear error.

    Raises:
        UnsafeFileError: the file holds pickled objects beyond tensors and plain containers.
        FileFormatError: anything else wrong with the file (damaged torch files raise any type).
    """
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refusal = unpickling_refusal(exc)
        if refusal is not None:
            raise UnsafeFileError(f"refused to load: the file holds pickled Python objects beyond tensors "
                                  f"({refusal}). {UNSAFE_HINT}", path=path) from None
        raise FileFormatError(f"corrupt or truncated torch file ({unpickler_reason(exc)}).", path=path) from None
    except MemoryError:
        raise FileFormatError("corrupt torch file: it claims more memory than this machine has.", path=path) from None
    except Exception as exc:  # damaged archives and pickles raise RuntimeError, KeyError, struct.error, ...
        raise FileFormatError(f"corrupt or truncated torch file ({error_detail(exc)}).", path=path) from None


@contextlib.contextmanager
def weights_only_unpickling() -> Iterator[None]:
    """Force every ``torch.load`` to ``weights_only=True`` and refuse raw pickle loads.

    ``torch.export.load`` falls back to ``weights_only=False`` for some archive
    entries; inside this context that fallback cannot execute code.
    """
    from torch.export.pt2_archive import _package

    original_load = torch.load
    original_pickle = _package.pickle
    original_c_load = getattr(torch._C, "_pickle_load_obj", None)

    def safe_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return original_load(*args, **kwargs)

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise pickle.UnpicklingError("the archive holds a pickled Python object (custom class or script object)")

    class _NoPickle:
        loads = staticmethod(refuse)
        load = staticmethod(refuse)
        UnpicklingError = pickle.UnpicklingError

    torch.load = safe_load  # type: ignore[assignment]
    _package.pickle = _NoPickle  # type: ignore[assignment]
    if original_c_load is not None:
        torch._C._pickle_load_obj = refuse
    try:
        yield
    finally:
        torch.load = original_load  # type: ignore[assignment]
        _package.pickle = original_pickle
        if original_c_load is not None:
            torch._C._pickle_load_obj = original_c_load


# -- ONNX --------------------------------------------------------------------------------------------------
def _graph_tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: Any) -> Iterator[Any]:
    for attribute in node.attribute:
        if attribute.HasField("t"):
            yield attribute.t
        yield from attribute.tensors
        if attribute.HasField("sparse_tensor"):
            yield from (attribute.sparse_tensor.values, attribute.sparse_tensor.indices)
        if attribute.HasField("g"):
            yield from _graph_tensors(attribute.g)
        for graph in attribute.graphs:
            yield from _graph_tensors(graph)


def _model_tensors(proto: Any) -> Iterator[Any]:
    yield from _graph_tensors(proto.graph)
    for function in proto.functions:
        for node in function.node:
            yield from _node_tensors(node)


def check_onnx_external_data(proto: Any, path: Path) -> bool:
    """Check every external-data reference of ``proto`` (loaded from ``path``); True when there is any.

    Raises:
        UnsafeFileError: a location that is absolute, or escapes the model's folder (``..``, a symbolic link).
        FileFormatError: a missing data file, or an offset/length past its end.
    """
    folder = os.path.realpath(path.parent)
    external = False
    for tensor in _model_tensors(proto):
        if tensor.data_location != 1:  # TensorProto.EXTERNAL
            continue
        external = True
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        where = f"tensor {tensor.name!r}'s external data {location!r}"
        if not location or "\0" in location or os.path.isabs(location) or re.match(r"^[A-Za-z]:|^[\\/]", location):
            raise UnsafeFileError(f"refused to load: {where} is not a relative path inside the model's folder.",
                                  path=path)
        target = os.path.realpath(os.path.join(folder, location))
        if os.path.commonpath([folder, target]) != folder:
            raise UnsafeFileError(f"refused to load: {where} points outside the model's folder {folder} (to "
                                  f"{target}); external data must lie next to the model.", path=path)
        _check_external_range(info, target, where, path)
    return external


def _check_external_range(info: dict[str, str], target: str, where: str, path: Path) -> None:
    if not os.path.isfile(target):
        raise FileFormatError(f"{where} does not exist (or is not a regular file) next to the model.", path=path)
    size = os.path.getsize(target)
    try:
        offset, length = int(info.get("offset", 0)), int(info.get("length", size - int(info.get("offset", 0))))
    except ValueError:
        raise FileFormatError(f"{where} has a non-integer offset/length.", path=path) from None
    if offset < 0 or length < 0 or offset + length > size:
        raise FileFormatError(f"{where}: offset {offset} + length {length} lies outside the {size}-byte file.",
                              path=path)

