"""Readers for text logs: CSV (and Lightning's metrics.csv), JSON lines, HF ``trainer_state.json``.

Each reader fills a :class:`CurveBuilder` and raises :class:`LogDamage` at the
first damaged line; :func:`dldebug.curves.logs.read_log` turns that into a
``FileFormatError`` or, with ``partial=True``, keeps what was read before it.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dldebug.curves.records import CurveBuilder, is_non_metric

__all__ = ["STEP_KEYS", "LogDamage", "read_csv", "read_jsonl", "read_trainer_state"]

#: Column/key names taken as the step, best first (``epoch`` only when nothing else exists).
STEP_KEYS = ("step", "global_step", "iteration", "iter", "steps", "epoch")


class LogDamage(Exception):  # a signal between reader and dispatcher, never shown to users
    """The first damaged line (1-based) of a log and what is wrong with it."""

    def __init__(self, line: int | None, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) pairs; a line that is not UTF-8 is damage."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")  # Excel writes a BOM
            except UnicodeDecodeError:
                raise LogDamage(number, "not UTF-8 text (binary or corrupt bytes)") from None


def _number(value: Any) -> float | None:
    """A JSON/CSV value as a float, None when it is not a number (booleans are not)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        return value
    if isinstance(value, int):  # JSON integers have no size limit; beyond a float's range they are +-Inf
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    return None


def _step_key(keys: list[str]) -> str | None:
    lowered = {k.lower(): k for k in keys}
    return next((lowered[k] for k in STEP_KEYS if k in lowered), None)


#: TensorBoard's "download CSV" names a file ``run-<run>-tag-<tag>.csv`` (``/`` in the tag becomes ``_``).
_TENSORBOARD_EXPORT = re.compile(r"run-.*-tag-(?P<tag>.+)\.csv$", re.IGNORECASE)


def read_csv(path: Path, builder: CurveBuilder) -> None:
    """Every numeric column of a CSV file with a header; empty cells are missing values.

    Text columns (first value not a number) are skipped, and so are step, epoch, index and
    wall-time columns (:func:`~dldebug.curves.records.is_non_metric`). A later non-number in a
    numeric column, or a row whose field count differs from the header's, is damage. A
    TensorBoard UI export (``Wall time,Step,Value``) names its one metric after the tag in the
    file name (``run-..-tag-train_loss.csv`` -> ``train_loss``).
    """
    lines = _text_lines(path)
    first = next(lines, None)
    if first is None or not first[1].strip():
        raise LogDamage(1, "empty file: expected a CSV header line")
    header_text = first[1]
    delimiter = "\t" if "\t" in header_text and "," not in header_text else ","
    header = [h.strip() for h in _csv_cells(header_text, delimiter, 1)]
    if [h.lower() for h in header] == ["wall time", "step", "value"]:
        export = _TENSORBOARD_EXPORT.search(path.name)
        header[2] = export.group("tag") if export else header[2]
    step_key = _step_key(header)
    kinds: dict[str, bool] = {}  # column -> numeric?
    for row_index, (number, text) in enumerate(lines):
        if not text.strip():
            continue
        cells = _csv_cells(text, delimiter, number)
        if len(cells) != len(header):
            raise LogDamage(number, f"row has {len(cells)} fields but the header has {len(header)} "
                                    "(truncated or corrupt row)")
        row = dict(zip(header, cells, strict=True))
        step = _csv_step(row, step_key, row_index, number)
        for column, cell in row.items():
            if column == step_key or not cell.strip() or is_non_metric(column):
                continue
            value = _csv_float(cell)
            if column not in kinds:
                kinds[column] = value is not None
            if not kinds[column]:
                continue
            if value is None:
                raise LogDamage(number, f"value {cell!r} in column {column!r} is not a number")
            builder.add(column, step, value)


def _csv_cells(text: str, delimiter: str, number: int) -> list[str]:
    try:
        return next(csv.reader([text.rstrip("\r\n")], delimiter=delimiter), [])
    except csv.Error as exc:  # e.g. a stray carriage return inside a row
        raise LogDamage(number, f"not a CSV row ({exc})") from None


def _csv_float(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _csv_step(row: Mapping[str, str], step_key: str | None, row_index: int, number: int) -> float:
    if step_key is None:
        return float(row_index)
    cell = row[step_key].strip()
    value = _csv_float(cell) if cell else float(row_index)
    if value is None or not math.isfinite(value):
        raise LogDamage(number, f"step {cell!r} in column {step_key!r} is not a finite number")
    return value


def _flatten(record: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, name + "/")
        else:
            yield name, value


def _add_record(builder: CurveBuilder, record: Mapping[str, Any], index: int, line: int | None,
                skip: tuple[str, ...] = ()) -> None:
    flat = dict(_flatten(record))
    step_key = _step_key(list(flat))
    step = float(index) if step_key is None else _number(flat[step_key])
    if step is None or not math.isfinite(step):
        raise LogDamage(line, f"step {flat[step_key or '']!r} is not a finite number")
    for key, value in flat.items():
        number = _number(value)
        if key != step_key and key not in skip and number is not None and not is_non_metric(key):
            builder.add(key, step, number)


def read_jsonl(path: Path, builder: CurveBuilder) -> None:
    """One JSON object per line (or one JSON array of objects); numeric values are metrics.

    Nested objects are flattened as ``a/b``.
    """
    with path.open("rb") as handle:
        starts_with_array = handle.read(4096).lstrip().startswith(b"[")
    if starts_with_array:
        _read_json_array(path, builder)
        return
    index = 0
    for number, text in _text_lines(path):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LogDamage(number, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise LogDamage(number, f"expected one JSON object per line, got {type(record).__name__}")
        _add_record(builder, record, index, number)
        index += 1


def _read_json_array(path: Path, builder: CurveBuilder) -> None:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise LogDamage(None, f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise LogDamage(exc.lineno, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise LogDamage(None, f"array item {index} is {type(record).__name__}, expected an object")
        _add_record(builder, record, index, None)


def read_trainer_state(path: Path, builder: CurveBuilder, text: str | None = None) -> None:
    """The ``log_history`` of a Hugging Face ``trainer_state.json``.

    A damaged file still yields the entries that were complete before the damage
    (they are parsed one by one), then :class:`LogDamage` names the line.
    """
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise LogDamage(None, f"not UTF-8 text (byte {exc.start})") from None
    start = text.find('"log_history"')
    if start < 0:
        raise LogDamage(None, "no 'log_history' key: not a Hugging Face trainer_state.json")
    bracket = text.find("[", start)
    if bracket < 0:
        raise LogDamage(_line_of(text, start), "'log_history' is not followed by a list")
    decoder = json.JSONDecoder()
    position, index = bracket + 1, 0
    while True:
        position = _skip(text, position)
        if position >= len(text):
            raise LogDamage(_line_of(text, position), "file ends inside 'log_history' (truncated)")
        if text[position] == "]":
            break
        try:
            entry, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise LogDamage(exc.lineno, f"invalid JSON in 'log_history' entry {index} ({exc.msg})") from None
        if not isinstance(entry, dict):
            raise LogDamage(_line_of(text, position), f"'log_history' entry {index} is not an object")
        _add_record(builder, entry, index, _line_of(text, position), skip=("epoch",))
        index += 1
    _check_rest(text, position + 1)


def _check_rest(text: str, position: int) -> None:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= position:  # damage after the history: the curves are complete but the file is not
            raise LogDamage(exc.lineno, f"invalid JSON after 'log_history' ({exc.msg})") from None


def _skip(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n,":
        position += 1
    return position


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, min(position, len(text))) + 1
