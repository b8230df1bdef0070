"""HTML renderer: one self-contained file (inline CSS and SVG, no script, nothing fetched).

The page opens with a summary: the findings by severity, each linking to its section, and,
for a report of several analyses, the lessons they exercise. Each section then shows the
lesson's explanation, its findings (message, evidence, fix), its plots and its tables;
a table that holds no finding folds to one line. A Content-Security-Policy forbids every
request, so a report can never reach the network.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from dldebug.findings import CheckResult, Figure, Finding, Report, Severity, Table
from dldebug.report.atomic import write_text_atomic
from dldebug.report.lessons import LESSONS
from dldebug.report.relevance import finding_terms, holds_finding, nothing_to_say
from dldebug.report.style import CSS
from dldebug.report.svg import draw_figure

__all__ = ["render_html", "write_html"]

_MAX_TABLE_ROWS = 500
_MAX_LIST_ITEMS = 12
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
_ORDER = (Severity.ERROR, Severity.WARNING, Severity.INFO)


def _esc(value: Any) -> str:
    if isinstance(value, float):
        return html.escape(f"{value:.6g}")
    if isinstance(value, list) and len(value) > _MAX_LIST_ITEMS:
        shown = ", ".join(_esc(v) for v in value[:_MAX_LIST_ITEMS])
        return f"[{shown}, ... ({len(value)} items)]"
    return html.escape(str(value))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class _Page:
    """Ids for every section and figure of one page, and where each finding is shown."""

    def __init__(self, report: Report) -> None:
        self.section_ids: dict[int, str] = {}
        self.located: list[tuple[Finding, str, str]] = []  # (finding, section id, section title)
        self._used: set[str] = {"summary", "main"}
        self._figures = 0
        root_id = "main"
        self.section_ids[id(report)] = root_id
        self.located += [(f, root_id, "overview") for f in report.own_findings]
        for section in report.sections:
            self._walk(section)

    def _walk(self, report: Report) -> None:
        slug = re.sub(r"[^a-z0-9]+", "-", report.title.lower()).strip("-")[:48] or "section"
        anchor, k = slug, 2
        while anchor in self._used:
            anchor, k = f"{slug}-{k}", k + 1
        self._used.add(anchor)
        self.section_ids[id(report)] = anchor
        self.located += [(f, anchor, report.title) for f in report.own_findings]
        for section in report.sections:
            self._walk(section)

    def figure_uid(self) -> str:
        self._figures += 1
        return f"f{self._figures}"


def _finding_row(f: Finding) -> str:
    evidence = ", ".join(f"{_esc(k)}={_esc(v)}" for k, v in f.evidence.items())
    fix = f'<div class="fix"><strong>Fix:</strong> {_esc(f.fix)}</div>' if f.fix else ""
    lesson = f" <small>(lesson {f.lesson})</small>" if f.lesson else ""
    return (f'<tr><td><span class="badge sev-{f.severity.value}">{f.severity.value}</span></td>'
            f"<td><code>{_esc(f.check)}</code></td><td>{_esc(f.message)}{lesson}"
            f'{f"<div class=evidence>{evidence}</div>" if evidence else ""}{fix}</td></tr>')


def _findings_html(findings: tuple[Finding, ...]) -> str:
    if not findings:
        return ""
    rows = "".join(_finding_row(f) for f in sorted(findings, key=lambda f: -f.severity.rank))
    return ('<div class="scroll"><table class="findings"><tr><th>severity</th><th>check</th>'
            f"<th>finding, evidence and fix</th></tr>{rows}</table></div>")


def _checks_html(checks: tuple[CheckResult, ...]) -> str:
    if not checks:
        return ""
    rows = "".join(f'<tr><td><code>{_esc(c.check)}</code></td><td class="{c.status}">{c.status}</td>'
                   f"<td>{_esc(c.reason)}</td></tr>" for c in checks)
    return f'<div class="scroll"><table><tr><th>check</th><th>status</th><th>reason</th></tr>{rows}</table></div>'


def _table_html(table: Table, *, open_: bool) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in row) + "</tr>"
                   for row in table.rows[:_MAX_TABLE_ROWS])
    more = ""
    if len(table.rows) > _MAX_TABLE_ROWS:
        more = f"<p>... {len(table.rows) - _MAX_TABLE_ROWS} more rows in report.json</p>"
    size = f"{_plural(len(table.rows), 'row')} &times; {_plural(len(table.columns), 'column')}"
    note = "" if open_ else " &middot; holds no finding"
    caption = f" &middot; {_esc(table.caption)}" if table.caption else ""
    return (f'<details class="table"{" open" if open_ else ""}><summary>table <code>{_esc(table.name)}</code> '
            f'&middot; {size}{note}{caption}</summary><div class="scroll"><table>'
            f"<tr>{head}</tr>{body}</table></div>{more}</details>")


def _figure_html(fig: Figure, page: _Page) -> str:
    drawn = draw_figure(fig, uid=page.figure_uid())
    caption = _esc(fig.caption) if fig.caption else ""
    if drawn.unlabelled:
        listed = "; ".join(f"{_esc(label)} at {_esc(x)}" for x, label in drawn.unlabelled)
        caption += f' <span class="unlabelled">Markers without a label in the plot: {listed}.</span>'
    return (f'<figure><div class="plot">{drawn.svg}</div>'
            + (f"<figcaption>{caption}</figcaption>" if caption else "") + "</figure>")


def _lesson_html(number: int) -> str:
    lesson = LESSONS[number]
    text = re.sub(r"\*([^*]+)\*", r"<em>\1</em>", html.escape(lesson.explanation))
    return f'<aside class="lesson"><strong>Lesson {number}: {html.escape(lesson.title)}</strong>{text}</aside>'


def _status_html(report: Report) -> str:
    """'No problem found in N steps' for a report (with its sections) holding no warning or error."""
    if not nothing_to_say(report):
        return ""
    steps = report.step_count
    where = f" in {steps[0]:,} {steps[1]}" if steps else ""
    return f'<p class="ok">No problem found{where}.</p>'


def _body_html(report: Report, page: _Page, *, depth: int, shown: frozenset[int], status: bool = True) -> str:
    parts = [_lesson_html(n) for n in report.lessons if n not in shown]
    shown = shown | set(report.lessons)
    if status and (not report.sections or nothing_to_say(report)):
        parts.append(_status_html(report))
    parts += [_findings_html(report.own_findings), _checks_html(report.checks)]
    parts += [_figure_html(fig, page) for fig in report.figures]
    terms = finding_terms(report)
    parts += [_table_html(t, open_=holds_finding(t, terms)) for t in report.tables]
    parts += [_section_html(s, page, depth=depth + 1, shown=shown) for s in report.sections]
    return "".join(parts)


def _section_html(report: Report, page: _Page, *, depth: int, shown: frozenset[int]) -> str:
    level = min(2 + depth, 6)
    anchor = page.section_ids[id(report)]
    kind = "report" if depth == 0 else "sub"
    return (f'<section class="{kind}" id="{anchor}" aria-labelledby="{anchor}-h">'
            f'<h{level} id="{anchor}-h">{_esc(report.title)}</h{level}>'
            f"{_body_html(report, page, depth=depth, shown=shown)}</section>")


def _summary_html(report: Report, page: _Page) -> str:
    counts = {s: len(report.filter(severity=s)) for s in _ORDER}
    badges = "".join(f'<span><span class="badge sev-{s.value}">{s.value}</span> {counts[s]}</span>' for s in _ORDER)
    groups = []
    for severity in _ORDER:
        located = [(f, sid, title) for f, sid, title in page.located if f.severity is severity]
        if not located:
            continue
        items = "".join(f'<li><a href="#{sid}"><code>{_esc(f.check)}</code></a> {_esc(f.message)} '
                        f'<span class="where">({_esc(title)})</span></li>' for f, sid, title in located)
        label = _plural(len(located), severity.value) if severity is not Severity.INFO else f"{len(located)} info"
        groups.append(f'<details{" open" if severity is not Severity.INFO else ""}><summary>{label}</summary>'
                      f"<ol>{items}</ol></details>")
    return (f'<nav class="summary" id="summary" aria-labelledby="summary-h"><h2 id="summary-h">Summary</h2>'
            f'<div class="counts">{badges}</div>{_status_html(report)}{"".join(groups)}'
            f"{_lessons_index(report, page)}{_contents(report, page)}</nav>")


def _lessons_index(report: Report, page: _Page) -> str:
    if not report.sections:
        return ""
    rows = []
    for number, lesson in LESSONS.items():
        where = [s for s in report.sections if number in s.lessons]
        links = ", ".join(f'<a href="#{page.section_ids[id(s)]}">{_esc(s.title)}</a>' for s in where)
        rows.append(f"<tr><td>{number}</td><td>{html.escape(lesson.title)}</td>"
                    f"<td>{links or 'not exercised'}</td></tr>")
    return ('<h2>Lessons</h2><div class="scroll"><table class="lessons"><tr><th>#</th><th>lesson</th>'
            f"<th>sections</th></tr>{''.join(rows)}</table></div>")


def _contents(report: Report, page: _Page) -> str:
    if len(report.sections) < 2:
        return ""
    items = "".join(f'<li><a href="#{page.section_ids[id(s)]}">{_esc(s.title)}</a></li>' for s in report.sections)
    return f"<h2>Sections</h2><ol>{items}</ol>"


def render_html(report: Report) -> str:
    """The whole report as one HTML document (no external resources, no script)."""
    page = _Page(report)
    meta = " &middot; ".join(f"{_esc(k)}: {_esc(v)}" for k, v in report.meta.items()
                             if not isinstance(v, (dict, list)))
    own = report.own_findings or report.tables or report.figures or report.checks or not report.sections
    main = ""
    if own:
        overview = Report(report.own_findings, title="Findings and evidence", tables=report.tables,
                          figures=report.figures, checks=report.checks, meta=report.meta)
        page.section_ids[id(overview)] = "main"
        shown = frozenset(report.lessons) if report.sections else frozenset()
        main = (f'<section class="report" id="main" aria-labelledby="main-h"><h2 id="main-h">Findings and '
                f'evidence</h2>{_body_html(overview, page, depth=0, shown=shown, status=False)}</section>')
    sections = "".join(_section_html(s, page, depth=0, shown=frozenset()) for s in report.sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}"><link rel="icon" href="data:,">'
        f"<title>{_esc(report.title)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>{_esc(report.title)}</h1><p class="meta">{meta}</p></header>'
        f"<main>{_summary_html(report, page)}{main}{sections}</main></body></html>"
    )


def write_html(report: Report, path: str | Path) -> Path:
    """Render and write the HTML atomically; returns the path."""
    return write_text_atomic(path, render_html(report))
