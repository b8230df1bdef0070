"""Finding, Severity and Report: the one result type every analysis returns.

Data flows one way: analyses build ``Finding``s, ``Table``s and ``Figure``s
into a ``Report``; renderers (console, JSON, HTML) only draw a Report. Figures
are stored as data (series, shaded spans, markers), never as pictures, so a
Report round-trips through JSON losslessly and renderers never compute.
"""

from __future__ import annotations

import enum
import json
import math
import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dldebug.errors import FileFormatError, InputError

__all__ = [
    "CheckResult",
    "Figure",
    "Finding",
    "Report",
    "Series",
    "Severity",
    "Span",
    "Table",
    "plain",
]

_SCHEMA = "dldebug.report/1"

# Numbers for a plot: a list, tuple, numpy array or tensor; stored as a tuple of plain floats.
Numbers = Sequence[float] | Any


class Severity(str, enum.Enum):
    """How bad a finding is; ordered ``INFO < WARNING < ERROR``."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank >= other.rank

    @classmethod
    def parse(cls, value: str | Severity) -> Severity:
        """Accept ``"error"``, ``"WARNING"`` or a Severity; raise a clear error otherwise."""
        if isinstance(value, Severity):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            allowed = ", ".join(s.value for s in cls)
            raise InputError(f"Unknown severity {value!r}; expected one of: {allowed}.") from None


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}


def plain(value: Any) -> Any:
    """Convert numpy/torch scalars, arrays and tuples into JSON-ready Python values.

    Non-finite floats stay floats (``nan``/``inf``); the JSON writer encodes them
    as strings so the output is strict JSON.
    """
    if value is None or isinstance(value, (bool, str)):
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
        return [plain(v) for v in value]
    if isinstance(value, Iterable):
        return [plain(v) for v in value]
    return str(value)


@dataclass(frozen=True)
class Finding:
    """One problem (or notable fact) found by a check.

    Args:
        check: stable check id, e.g. ``"loss.plateau"``.
        severity: ``Severity.INFO``, ``WARNING`` or ``ERROR``.
        message: one line saying what was found.
        evidence: the numbers a user can verify (plain JSON values).
        fix: what to do about it.
        lesson: the lesson number in LESSONS.md this finding comes from.

    Example:
        >>> f = Finding("loss.stuck", Severity.ERROR, "loss did not fall", {"start_step": 0})
        >>> f.severity >= Severity.WARNING
        True
    """

    check: str
    severity: Severity
    message: str
    evidence: dict = field(default_factory=dict)
    fix: str | None = None
    lesson: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.check, str) or not self.check:
            raise InputError(f"Finding.check must be a non-empty string id such as 'loss.plateau'; got {self.check!r}.")
        object.__setattr__(self, "severity", Severity.parse(self.severity))
        object.__setattr__(self, "evidence", plain(dict(self.evidence)))
        if self.lesson is not None and not 1 <= int(self.lesson) <= 11:
            raise InputError(f"Finding.lesson must be a lesson number 1..11 or None; got {self.lesson!r}.")

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity.value,
            "message": self.message,
            "evidence": self.evidence,
            "fix": self.fix,
            "lesson": self.lesson,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        return cls(
            check=data["check"],
            severity=Severity.parse(data["severity"]),
            message=data["message"],
            evidence=dict(data.get("evidence") or {}),
            fix=data.get("fix"),
            lesson=data.get("lesson"),
        )


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
        x, y = tuple(plain(list(self.x))), tuple(plain(list(self.y)))
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


CheckStatus = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class CheckResult:
    """The status of one check run by a suite (``check_model``, ``preflight``)."""

    check: str
    status: CheckStatus
    reason: str = ""

    def __post_init__(self) -> None:
        if self.status not in ("passed", "failed", "skipped"):
            raise InputError(f"CheckResult.status must be 'passed', 'failed' or 'skipped'; got {self.status!r}.")

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "status": self.status, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        return cls(data["check"], data["status"], data.get("reason", ""))


class Report:
    """Findings plus named tables and figures; sections hold sub-reports.

    A Report is truthy when no error-severity finding is present (in it or its
    sections). It round-trips through JSON losslessly.

    Args:
        findings: the findings of this analysis.
        title: the section title used by renderers.
        tables: named tables (evidence too large for a finding).
        figures: plots described as data.
        sections: sub-reports, one per analysis (the demo's report has many).
        checks: per-check status when a suite of checks ran.
        meta: free-form plain values about the run (versions, inputs).

    Example:
        >>> r = Report([Finding("ctc.missing_blank", Severity.ERROR, "no blank class")])
        >>> bool(r), r.has("ctc.missing_blank")
        (False, True)
        >>> Report.from_json(r.to_json()) == r
        True
    """

    def __init__(
        self,
        findings: Iterable[Finding] = (),
        *,
        title: str = "dldebug report",
        tables: Iterable[Table] = (),
        figures: Iterable[Figure] = (),
        sections: Iterable[Report] = (),
        checks: Iterable[CheckResult] = (),
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.title = title
        self.own_findings: tuple[Finding, ...] = tuple(findings)
        for f in self.own_findings:
            if not isinstance(f, Finding):
                raise InputError(f"Report findings must be Finding objects; got {type(f).__name__}.")
        self.tables: tuple[Table, ...] = tuple(tables)
        self.figures: tuple[Figure, ...] = tuple(figures)
        self.sections: tuple[Report, ...] = tuple(sections)
        self.checks: tuple[CheckResult, ...] = tuple(checks)
        self.meta: dict[str, Any] = plain(dict(meta or {}))

    # -- queries -------------------------------------------------------------------------------------
    @property
    def findings(self) -> tuple[Finding, ...]:
        """All findings, this report's first, then each section's in order."""
        out = list(self.own_findings)
        for section in self.sections:
            out.extend(section.findings)
        return tuple(out)

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.findings)

    def __len__(self) -> int:
        return len(self.findings)

    def __bool__(self) -> bool:
        return not any(f.severity is Severity.ERROR for f in self.findings)

    @property
    def ok(self) -> bool:
        """Same as ``bool(report)``: no error-severity finding."""
        return bool(self)

    def has(self, check_id: str) -> bool:
        """True when a finding with this check id (or id prefix ending in '.') is present."""
        return bool(self.filter(check=check_id))

    def filter(self, *, severity: Severity | str | None = None, min_severity: Severity | str | None = None,
               check: str | None = None) -> tuple[Finding, ...]:
        """Findings matching an exact severity, a minimum severity and/or a check id.

        ``check`` matches an exact id, or every id under a prefix ending in ``"."``
        (``"loss."`` matches ``"loss.plateau"``).
        """
        exact = None if severity is None else Severity.parse(severity)
        floor = None if min_severity is None else Severity.parse(min_severity)
        out = []
        for f in self.findings:
            if exact is not None and f.severity is not exact:
                continue
            if floor is not None and f.severity < floor:
                continue
            if check is not None and not (f.check == check or (check.endswith(".") and f.check.startswith(check))):
                continue
            out.append(f)
        return tuple(out)

    def get(self, check_id: str) -> Finding | None:
        """The first finding with this check id, or None."""
        found = self.filter(check=check_id)
        return found[0] if found else None

    def table(self, name: str) -> Table:
        """The named table of this report or its sections."""
        for t in self._all("tables"):
            if t.name == name:
                return t
        names = [t.name for t in self._all("tables")]
        raise InputError(f"No table named {name!r} in report {self.title!r}; tables: {names}.")

    def figure(self, name: str) -> Figure:
        """The named figure of this report or its sections."""
        for f in self._all("figures"):
            if f.name == name:
                return f
        names = [f.name for f in self._all("figures")]
        raise InputError(f"No figure named {name!r} in report {self.title!r}; figures: {names}.")

    def _all(self, attr: str) -> list[Any]:
        out = list(getattr(self, attr))
        for s in self.sections:
            out.extend(s._all(attr))
        return out

    @property
    def worst_severity(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    # -- building --------------------------------------------------------------------------------------
    def with_section(self, section: Report) -> Report:
        """A new report with ``section`` appended."""
        return Report(self.own_findings, title=self.title, tables=self.tables, figures=self.figures,
                      sections=(*self.sections, section), checks=self.checks, meta=self.meta)

    @classmethod
    def merge(cls, reports: Iterable[Report], *, title: str = "dldebug report",
              meta: Mapping[str, Any] | None = None) -> Report:
        """One report with each given report as a section."""
        return cls(title=title, sections=tuple(reports), meta=meta)

    # -- serialisation ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": _SCHEMA,
            "title": self.title,
            "findings": [f.to_dict() for f in self.own_findings],
            "tables": [t.to_dict() for t in self.tables],
            "figures": [f.to_dict() for f in self.figures],
            "sections": [s.to_dict() for s in self.sections],
            "checks": [c.to_dict() for c in self.checks],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        schema = data.get("schema", _SCHEMA)
        if schema != _SCHEMA:
            raise FileFormatError(f"unsupported report schema {schema!r}; this dldebug reads {_SCHEMA!r}.")
        return cls(
            (Finding.from_dict(f) for f in data.get("findings", [])),
            title=data.get("title", "dldebug report"),
            tables=(Table.from_dict(t) for t in data.get("tables", [])),
            figures=(Figure.from_dict(f) for f in data.get("figures", [])),
            sections=(cls.from_dict(s) for s in data.get("sections", [])),
            checks=(CheckResult.from_dict(c) for c in data.get("checks", [])),
            meta=data.get("meta") or {},
        )

    def to_json(self, *, indent: int | None = 2) -> str:
        """Strict JSON; NaN/Inf floats are written as the strings "NaN"/"Infinity"/"-Infinity"."""
        return json.dumps(_encode_nonfinite(self.to_dict()), indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> Report:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FileFormatError(f"not a dldebug JSON report: {exc.msg} at line {exc.lineno}, "
                                  f"column {exc.colno}.") from None
        if not isinstance(data, dict):
            raise FileFormatError(f"not a dldebug JSON report: expected an object, got {type(data).__name__}.")
        return cls.from_dict(_decode_nonfinite(data))

    def to_html(self, path: str | Path) -> Path:
        """Write one self-contained HTML file (plots inline) atomically; returns the path."""
        from dldebug.report.html import write_html

        return write_html(self, path)

    def save_json(self, path: str | Path) -> Path:
        """Write the JSON atomically; returns the path."""
        from dldebug.report.atomic import write_text_atomic

        return write_text_atomic(path, self.to_json())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Report):
            return NotImplemented
        return _encode_nonfinite(self.to_dict()) == _encode_nonfinite(other.to_dict())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        counts = {s.value: len(self.filter(severity=s)) for s in Severity}
        return (f"Report(title={self.title!r}, findings={len(self.findings)} "
                f"(error={counts['error']}, warning={counts['warning']}, info={counts['info']}), "
                f"tables={len(self._all('tables'))}, figures={len(self._all('figures'))})")


_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _encode_nonfinite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _encode_nonfinite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode_nonfinite(v) for v in value]
    return value


def _decode_nonfinite(value: Any) -> Any:
    # Only the evidence/table/series payloads can carry non-finite numbers; a genuine string
    # "NaN" in a message is indistinguishable, which we accept (messages are not decoded: see keys).
    if isinstance(value, str) and value in _NONFINITE:
        return _NONFINITE[value]
    if isinstance(value, dict):
        return {k: (v if k in _TEXT_KEYS else _decode_nonfinite(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_nonfinite(v) for v in value]
    return value


_TEXT_KEYS = frozenset({"check", "severity", "message", "fix", "title", "name", "caption", "label", "xlabel",
                        "ylabel", "schema", "status", "reason"})
