"""What a renderer shows in full and what it folds to one line (shared by the console and HTML renderers).

A table *holds a finding* when one of its cells names something a finding of its report
(or of the report's sections) is about: the finding's check id, or a text value of its
evidence (a layer, a module, a class). A per-layer table of a healthy run holds none and
folds to one line; the same table is shown in full once a finding names one of its layers.
"""

from __future__ import annotations

from dldebug.findings import Report, Severity, Table

__all__ = ["finding_terms", "holds_finding", "nothing_to_say"]

_MIN_TERM = 2


def finding_terms(report: Report) -> tuple[frozenset[str], tuple[str, ...]]:
    """(text evidence values, check ids) of every finding of ``report`` and its sections."""
    values: set[str] = set()
    checks: set[str] = set()
    for f in report.findings:
        checks.add(f.check)
        for value in f.evidence.values():
            items = value if isinstance(value, list) else [value]
            values.update(v.strip() for v in items if isinstance(v, str) and len(v.strip()) >= _MIN_TERM)
            for v in items:
                if isinstance(v, str) and "," in v:  # "features.0, classifier.1": a list written as text
                    values.update(part.strip() for part in v.split(",") if len(part.strip()) >= _MIN_TERM)
    return frozenset(values), tuple(sorted(checks))


def holds_finding(table: Table, terms: tuple[frozenset[str], tuple[str, ...]]) -> bool:
    """True when a cell of ``table`` equals an evidence value or mentions a check id (see the module doc).

    Example:
        >>> from dldebug.findings import Finding
        >>> report = Report([Finding("capacity.dominant_layer", "warning", "fc holds 99%", {"layer": "fc"})])
        >>> holds_finding(Table("layers", ("layer", "params"), (("conv", 10), ("fc", 990))), finding_terms(report))
        True
        >>> holds_finding(Table("layers", ("layer", "params"), (("conv", 10),)), finding_terms(Report()))
        False
    """
    values, checks = terms
    for row in table.rows:
        for cell in row:
            if not isinstance(cell, str):
                continue
            text = cell.strip()
            if text in values or any(check in text for check in checks):
                return True
    return False


def nothing_to_say(report: Report) -> bool:
    """True when neither ``report`` nor its sections hold a warning or an error."""
    return not report.filter(min_severity=Severity.WARNING)
