"""Finding, Severity and Report: the one result type every analysis returns.

Data flows one way: analyses build ``Finding``s, ``Table``s and ``Figure``s
into a ``Report``; renderers (console, JSON, HTML) only draw a Report. Figures
are stored as data (series, shaded spans, markers), never as pictures, so a
Report round-trips through JSON losslessly and renderers never compute.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

from dldebug.errors import FileFormatError, InputError
from dldebug.evidence import (
    Figure,
    Numbers,
    Series,
    Span,
    Table,
    dumps_strict,
    encode_nonfinite,
    loads_strict,
    plain,
)
from dldebug.severity import Severity

__all__ = [
    "CheckResult",
    "CheckStatus",
    "Figure",
    "Finding",
    "Numbers",
    "Report",
    "Series",
    "Severity",
    "Span",
    "Table",
    "plain",
]

_SCHEMA = "dldebug.report/1"


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
        return dumps_strict(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Report:
        return cls.from_dict(loads_strict(text, what="dldebug JSON report"))

    @overload
    def to_html(self, path: None = None) -> str: ...

    @overload
    def to_html(self, path: str | Path) -> Path: ...

    def to_html(self, path: str | Path | None = None) -> str | Path:
        """The self-contained HTML report (plots inline): written atomically to ``path``, or returned as text.

        Every CLI ``--html`` and ``dldebug demo`` use this renderer.

        Returns:
            The path written, or the HTML document when ``path`` is None.
        """
        from dldebug.report.html import render_html, write_html

        return render_html(self) if path is None else write_html(self, path)

    def save_json(self, path: str | Path) -> Path:
        """Write the JSON atomically; returns the path."""
        from dldebug.report.atomic import write_text_atomic

        return write_text_atomic(path, self.to_json())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Report):
            return NotImplemented
        return encode_nonfinite(self.to_dict()) == encode_nonfinite(other.to_dict())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return self.summary()

    def summary(self, *, limit: int = 15, width: int = 110) -> str:
        """A few lines a person reads: the counts, then each finding (worst first) as severity, id, message.

        Args:
            limit: at most this many findings are listed; the rest are counted.
            width: messages longer than this are cut with "...".

        Example:
            >>> r = Report([Finding("loss.stuck", "error", "loss did not fall")], title="curve", meta={"points": 50})
            >>> print(r)
            Report 'curve': 1 finding (1 error) in 50 points
              ERROR    loss.stuck  loss did not fall
            >>> print(Report(title="monitor", meta={"steps_observed": 500}))
            Report 'monitor': no problem found in 500 steps
        """
        findings = sorted(self.findings, key=lambda f: -f.severity.rank)
        counts = ", ".join(f"{n} {s.value}" for s in (Severity.ERROR, Severity.WARNING, Severity.INFO)
                           if (n := sum(f.severity is s for f in findings)))
        steps = self.step_count
        where = f" in {steps[0]:,} {steps[1]}" if steps else ""
        if not any(f.severity >= Severity.WARNING for f in findings):
            head = f"no problem found{where}" + (f" ({counts})" if counts else "")
        else:
            head = f"{len(findings)} finding{'s' if len(findings) != 1 else ''} ({counts}){where}"
        extras = [f"{n} {name}{'s' if n != 1 else ''}" for n, name in (
            (len(self._all("tables")), "table"), (len(self._all("figures")), "figure"),
            (len(self.sections), "section")) if n]
        lines = [f"Report {self.title!r}: {head}" + (f"; {', '.join(extras)}" if extras else "")]
        pad = min(max((len(f.check) for f in findings[:limit]), default=0), 32)
        for f in findings[:limit]:
            message = f.message if len(f.message) <= width else f.message[:width - 3] + "..."
            lines.append(f"  {f.severity.value.upper():<8} {f.check:<{pad}}  {message}")
        if len(findings) > limit:
            lines.append(f"  ... and {len(findings) - limit} more (report.findings)")
        return "\n".join(lines)

    @property
    def step_count(self) -> tuple[int, str] | None:
        """(count, unit) of the training steps or curve points this report is about, from its meta."""
        for key, unit in (("steps_observed", "steps"), ("steps", "steps"), ("points", "points")):
            value = self.meta.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value, unit
        return None

    @property
    def lessons(self) -> tuple[int, ...]:
        """The lesson numbers this report (and its sections) covers: its findings' and ``meta["lessons"]``."""
        found = {f.lesson for f in self.findings if f.lesson is not None}
        stack = [self]
        while stack:
            report = stack.pop()
            declared = report.meta.get("lessons") or []
            found.update(int(n) for n in declared if isinstance(n, int) and 1 <= n <= 11)
            stack.extend(report.sections)
        return tuple(sorted(found))
