"""Evidence too large for a finding: tables and figures, stored as plain data.

Figures are described (series, shaded spans, markers), never drawn here: the
renderers draw them, so a Report round-trips through JSON losslessly.
"""

from __future__ import annotations

import enum
import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dldebug.errors import FileFormatError, InputError
from dldebug.severity import Severity

__all__ = [
    "Figure",
    "Numbers",
    "Series",
    "Span",
    "Table",
    "decode_nonfinite",
    "dumps_strict",
    "encode_nonfinite",
    "loads_strict",
    "plain",
]

# Numbers for a plot: a list, tuple, numpy array or tensor; stored as a tuple of plain floats.
Numbers = Sequence[float] | Any


def plain(value: Any) -> Any:
    """Convert numpy/torch scalars, arrays and tuples into JSON-ready Python values.

    Non-finite floats stay floats (``nan``/``inf``); the JSON writer encodes them
    as strings so the output is strict JSON.
    """
    kind = type(value)
    if kind is float or kind is int or value is None or kind is str or kind is bool:  # the common case, fast
        return value
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays/scalars, torch tensors
        return plain(value.tolist())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        if all(type(v) is float or type(v) is int for v in value):  # a plain numeric list: nothing to convert
            return list(value)
        return [plain(v) for v in value]
    if isinstance(value, Iterable):
        return [plain(v) for v in value]
    return str(value)


@dataclass(frozen=True)
class Table:
    """A named table: column names and rows of plain values."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    caption: str = ""

    def __post_init__(self) -> None:
        cols = tuple(str(c) for c in self.columns)
        rows = tuple(tuple(plain(list(r))) for r in self.rows)
        for i, row in enumerate(rows):
            if len(row) != len(cols):
                raise InputError(
                    f"Table {self.name!r}: row {i} has {len(row)} values but there are {len(cols)} columns {cols}."
                )
        object.__setattr__(self, "columns", cols)
        object.__setattr__(self, "rows", rows)

    @classmethod
    def from_records(cls, name: str, records: Sequence[Mapping[str, Any]], caption: str = "") -> Table:
        """Build a table from a list of dicts sharing the same keys (first record's order)."""
        if not records:
            return cls(name, (), (), caption)
        columns = tuple(records[0].keys())
        return cls(name, columns, tuple(tuple(r.get(c) for c in columns) for r in records), caption)

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def column(self, name: str) -> list[Any]:
        try:
            j = self.columns.index(name)
        except ValueError:
            raise InputError(f"Table {self.name!r} has no column {name!r}; columns: {list(self.columns)}.") from None
        return [row[j] for row in self.rows]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "columns": list(self.columns), "rows": [list(r) for r in self.rows],
                "caption": self.caption}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Table:
        return cls(data["name"], tuple(data["columns"]), tuple(tuple(r) for r in data["rows"]),
                   data.get("caption", ""))


@dataclass(frozen=True)
class Series:
    """One data series of a figure."""

    label: str
    x: Numbers
    y: Numbers
    style: Literal["line", "scatter", "bar", "step"] = "line"

    def __post_init__(self) -> None:
        x, y = tuple(plain(self.x)), tuple(plain(self.y))
        if len(x) != len(y):
            raise InputError(f"Series {self.label!r}: x has {len(x)} points but y has {len(y)}.")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "x": list(self.x), "y": list(self.y), "style": self.style}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Series:
        return cls(data["label"], tuple(data["x"]), tuple(data["y"]), data.get("style", "line"))


@dataclass(frozen=True)
class Span:
    """A shaded x-range of a figure (e.g. a detected plateau), coloured by severity."""

    start: float
    end: float
    label: str
    severity: Severity = Severity.INFO

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", plain(self.start))
        object.__setattr__(self, "end", plain(self.end))
        object.__setattr__(self, "severity", Severity.parse(self.severity))

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "label": self.label, "severity": self.severity.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Span:
        return cls(data["start"], data["end"], data["label"], Severity.parse(data.get("severity", "info")))


@dataclass(frozen=True)
class Figure:
    """A plot described as data; the HTML renderer draws it.

    ``matrix`` (rows of numbers) turns the figure into a heat map, e.g. a
    confusion matrix; otherwise ``series`` are drawn on shared axes.
    """

    name: str
    title: str = ""
    series: Sequence[Series] = ()
    spans: Sequence[Span] = ()
    markers: Sequence[tuple[float, str]] = ()  # vertical lines: (x, label)
    xlabel: str = ""
    ylabel: str = ""
    logx: bool = False
    logy: bool = False
    matrix: Sequence[Numbers] | None = None
    caption: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "series", tuple(self.series))
        object.__setattr__(self, "spans", tuple(self.spans))
        object.__setattr__(self, "markers", tuple((plain(x), str(lbl)) for x, lbl in self.markers))
        if self.matrix is not None:
            object.__setattr__(self, "matrix", tuple(tuple(plain(list(r))) for r in self.matrix))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "title": self.title,
            "series": [s.to_dict() for s in self.series], "spans": [s.to_dict() for s in self.spans],
            "markers": [list(m) for m in self.markers], "xlabel": self.xlabel, "ylabel": self.ylabel,
            "logx": self.logx, "logy": self.logy,
            "matrix": None if self.matrix is None else [list(r) for r in self.matrix],
            "caption": self.caption,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Figure:
        matrix = data.get("matrix")
        return cls(
            name=data["name"], title=data.get("title", ""),
            series=tuple(Series.from_dict(s) for s in data.get("series", [])),
            spans=tuple(Span.from_dict(s) for s in data.get("spans", [])),
            markers=tuple((m[0], m[1]) for m in data.get("markers", [])),
            xlabel=data.get("xlabel", ""), ylabel=data.get("ylabel", ""),
            logx=bool(data.get("logx", False)), logy=bool(data.get("logy", False)),
            matrix=None if matrix is None else tuple(tuple(r) for r in matrix),
            caption=data.get("caption", ""),
        )


_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def encode_nonfinite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: encode_nonfinite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [encode_nonfinite(v) for v in value]
    return value


def decode_nonfinite(value: Any) -> Any:
    # Only the evidence/table/series payloads can carry non-finite numbers; a genuine string
    # "NaN" in a message is indistinguishable, which we accept (messages are not decoded: see keys).
    if isinstance(value, str) and value in _NONFINITE:
        return _NONFINITE[value]
    if isinstance(value, dict):
        return {k: (v if k in _TEXT_KEYS else decode_nonfinite(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_nonfinite(v) for v in value]
    return value


_TEXT_KEYS = frozenset({"check", "severity", "message", "fix", "title", "name", "caption", "label", "xlabel",
                        "ylabel", "schema", "status", "reason"})


def dumps_strict(data: Any, *, indent: int | None = 2) -> str:
    """Strict JSON; NaN/Inf floats become the strings "NaN"/"Infinity"/"-Infinity"."""
    return json.dumps(encode_nonfinite(data), indent=indent, allow_nan=False)


def loads_strict(text: str, *, what: str = "dldebug JSON") -> dict[str, Any]:
    """Parse :func:`dumps_strict` output back, restoring non-finite floats; a clear error otherwise."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileFormatError(f"not a {what}: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None
    if not isinstance(data, dict):
        raise FileFormatError(f"not a {what}: expected an object, got {type(data).__name__}.")
    return decode_nonfinite(data)
