"""Read scalar summaries from TensorBoard event files (the ``tensorboard`` extra).

Event files are TFRecord files of ``Event`` protocol buffers. They are parsed
here record by record with TensorBoard's own protobuf classes and CRC-32C, not
with ``EventAccumulator``: that one imports TensorFlow when it is installed
(seconds of start-up) and silently skips damaged records, whereas dldebug must
name the file and record where the damage is.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from dldebug.curves.records import CurveBuilder
from dldebug.curves.text_formats import LogDamage
from dldebug.errors import require

__all__ = ["event_files", "read_event_file"]

_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_TENSOR_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 19: np.float16}


def event_files(directory: Path) -> list[Path]:
    """Every ``events.out.tfevents.*`` file under ``directory``, sorted by run folder then name."""
    return sorted(p for p in directory.rglob("events.out.tfevents.*") if p.is_file())


def read_event_file(path: Path, builder: CurveBuilder, prefix: str = "") -> None:
    """Add every scalar of one event file to ``builder`` (tags prefixed by ``prefix``).

    Raises:
        LogDamage: at the first truncated or corrupt record; ``line`` is the record number.
        MissingDependencyError: tensorboard is not installed.
    """
    require("tensorboard", extra="tensorboard", feature="Reading TensorBoard event files")
    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    data = path.read_bytes()
    offset, record = 0, 0
    while offset < len(data):
        record += 1
        if len(data) - offset < _HEADER.size:
            raise LogDamage(record, f"record {record} at byte {offset}: truncated record header")
        length, length_crc = _HEADER.unpack_from(data, offset)
        if masked_crc32c(data[offset:offset + 8]) != length_crc:
            raise LogDamage(record, f"record {record} at byte {offset}: corrupt record length (CRC mismatch)")
        end = offset + _HEADER.size + length
        if end + _FOOTER.size > len(data):
            raise LogDamage(record, f"record {record} at byte {offset}: truncated record "
                                    f"({len(data) - offset} of {end + _FOOTER.size - offset} bytes)")
        payload = data[offset + _HEADER.size:end]
        event = _parse(event_pb2, payload)
        # CRC-32C runs in pure Python: check it only for records we use (scalars are small) or cannot parse.
        if (event is None or _has_scalars(event)) and masked_crc32c(payload) != _FOOTER.unpack_from(data, end)[0]:
            raise LogDamage(record, f"record {record} at byte {offset}: corrupt record data (CRC mismatch)")
        if event is None:
            raise LogDamage(record, f"record {record} at byte {offset}: not a TensorBoard Event")
        _add_scalars(event, builder, prefix)
        offset = end + _FOOTER.size


def _parse(event_pb2: Any, payload: bytes) -> Any:
    event = event_pb2.Event()
    try:
        event.ParseFromString(payload)
    except Exception:  # protobuf's DecodeError has no stable import path
        return None
    return event


def _has_scalars(event: Any) -> bool:
    return event.HasField("summary") and any(
        v.WhichOneof("value") in ("simple_value", "tensor") for v in event.summary.value)


def _add_scalars(event: Any, builder: CurveBuilder, prefix: str) -> None:
    if not event.HasField("summary"):
        return
    for value in event.summary.value:
        kind = value.WhichOneof("value")
        if kind == "simple_value":
            builder.add(prefix + value.tag, float(event.step), float(value.simple_value))
        elif kind == "tensor":
            scalar = _tensor_scalar(value.tensor)
            if scalar is not None:
                builder.add(prefix + value.tag, float(event.step), scalar)


def _tensor_scalar(tensor: Any) -> float | None:
    """The value of a scalar TensorProto (tf.summary.scalar in TF2 writes these), else None."""
    if len(tensor.tensor_shape.dim) != 0:
        return None
    dtype = _TENSOR_DTYPES.get(tensor.dtype)
    if dtype is None:
        return None
    if tensor.tensor_content:
        size = np.dtype(dtype).itemsize
        if len(tensor.tensor_content) < size:  # not even one element: a damaged or foreign record
            return None
        return float(np.frombuffer(tensor.tensor_content[:size], dtype=dtype)[0])
    for field in ("float_val", "double_val", "int_val", "int64_val"):
        values = getattr(tensor, field)
        if len(values):
            return float(values[0])
    if tensor.dtype == 19 and len(tensor.half_val):
        return float(np.array([tensor.half_val[0]], dtype=np.uint16).view(np.float16)[0])
    return None
