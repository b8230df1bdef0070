"""HTML renderer: one self-contained file, plots inlined as SVG, no network fetches."""

from __future__ import annotations

import html
import io
import math
from pathlib import Path
from typing import Any

from dldebug.findings import Figure, Report, Severity, Table
from dldebug.report.atomic import write_text_atomic

_COLOURS = {Severity.ERROR: "#c62828", Severity.WARNING: "#ef8f00", Severity.INFO: "#1565c0"}
_SPAN_COLOURS = {Severity.ERROR: "#ef9a9a", Severity.WARNING: "#ffe082", Severity.INFO: "#90caf9"}
_MAX_TABLE_ROWS = 500

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#212121;padding:0 1rem}
h1{margin-bottom:.2rem} .meta{color:#666;font-size:.9rem}
section{border-left:3px solid #e0e0e0;padding-left:1rem;margin:1.5rem 0}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem} td,th{border:1px solid #ddd;padding:.25rem .5rem;
text-align:left;vertical-align:top} th{background:#f5f5f5}
.sev{font-weight:bold;text-transform:uppercase;font-size:.8rem}
.evidence{color:#555;font-family:ui-monospace,monospace;font-size:.8rem} .fix{color:#2e7d32}
.summary span{margin-right:1rem;font-weight:bold} figure{margin:1rem 0} figcaption{color:#555;font-size:.9rem}
.passed{color:#2e7d32}.failed{color:#c62828}.skipped{color:#777}
nav ul{columns:2;font-size:.9rem} .scroll{overflow-x:auto;max-width:100%}
"""


def _esc(value: Any) -> str:
    if isinstance(value, float):
        return html.escape(f"{value:.6g}")
    return html.escape(str(value))


def _findings_html(report: Report) -> str:
    if not report.own_findings:
        return ""
    rows = []
    for f in sorted(report.own_findings, key=lambda f: -f.severity.rank):
        colour = _COLOURS[f.severity]
        ev = ", ".join(f"{_esc(k)}={_esc(v)}" for k, v in f.evidence.items())
        fix = f'<div class="fix">fix: {_esc(f.fix)}</div>' if f.fix else ""
        lesson = f" <small>(lesson {f.lesson})</small>" if f.lesson else ""
        rows.append(
            f'<tr><td class="sev" style="color:{colour}">{f.severity.value}</td><td><code>{_esc(f.check)}</code></td>'
            f'<td>{_esc(f.message)}{lesson}<div class="evidence">{ev}</div>{fix}</td></tr>'
        )
    return "<table><tr><th>severity</th><th>check</th><th>finding</th></tr>" + "".join(rows) + "</table>"


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in row) + "</tr>"
                   for row in table.rows[:_MAX_TABLE_ROWS])
    more = ""
    if len(table.rows) > _MAX_TABLE_ROWS:
        more = f"<p>... {len(table.rows) - _MAX_TABLE_ROWS} more rows in report.json</p>"
    cap = f"<caption>{_esc(table.name)}{': ' + _esc(table.caption) if table.caption else ''}</caption>"
    return f'<div class="scroll"><table>{cap}<tr>{head}</tr>{body}</table></div>{more}'


def figure_svg(fig: Figure) -> str:
    """Draw a Figure with matplotlib (Agg) and return the SVG markup."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    mfig, ax = plt.subplots(figsize=(7.5, 3.6))
    try:
        if fig.matrix is not None:
            image = ax.imshow([[(v if v is not None else math.nan) for v in r] for r in fig.matrix],
                              cmap="viridis", aspect="auto")
            mfig.colorbar(image, ax=ax)
        for s in fig.series:
            x = [math.nan if v is None else v for v in s.x]
            y = [math.nan if v is None else v for v in s.y]
            if s.style == "scatter":
                ax.scatter(x, y, s=10, label=s.label)
            elif s.style == "bar":
                ax.bar(x, y, label=s.label)
            elif s.style == "step":
                ax.step(x, y, where="post", label=s.label)
            else:
                ax.plot(x, y, label=s.label, linewidth=1.2)
        for span in fig.spans:
            ax.axvspan(span.start, span.end, color=_SPAN_COLOURS[span.severity], alpha=0.35, label=span.label)
        for x_marker, label in fig.markers:
            ax.axvline(x_marker, color="#c62828", linestyle="--", linewidth=1)
            ax.annotate(label, (x_marker, 1.0), xycoords=("data", "axes fraction"), fontsize=8, rotation=90,
                        va="top", ha="right", color="#c62828")
        if fig.logx:
            ax.set_xscale("log")
        if fig.logy:
            ax.set_yscale("log")
        ax.set_xlabel(fig.xlabel)
        ax.set_ylabel(fig.ylabel)
        ax.set_title(fig.title or fig.name, fontsize=10)
        if fig.series or fig.spans:
            ax.legend(fontsize=8, loc="best")
        ax.grid(True, alpha=0.3)
        mfig.tight_layout()
        buffer = io.StringIO()
        mfig.savefig(buffer, format="svg")
    finally:
        plt.close(mfig)
    svg = buffer.getvalue()
    return svg[svg.find("<svg"):]


def _section_html(report: Report, depth: int) -> str:
    level = min(2 + depth, 6)
    parts = [f'<section id="{_anchor(report.title)}"><h{level}>{_esc(report.title)}</h{level}>']
    parts.append(_findings_html(report))
    if report.checks:
        rows = "".join(f'<tr><td><code>{_esc(c.check)}</code></td><td class="{c.status}">{c.status}</td>'
                       f"<td>{_esc(c.reason)}</td></tr>" for c in report.checks)
        parts.append(f"<table><tr><th>check</th><th>status</th><th>reason</th></tr>{rows}</table>")
    for fig in report.figures:
        cap = f"<figcaption>{_esc(fig.caption)}</figcaption>" if fig.caption else ""
        parts.append(f"<figure>{figure_svg(fig)}{cap}</figure>")
    for table in report.tables:
        parts.append(_table_html(table))
    for section in report.sections:
        parts.append(_section_html(section, depth + 1))
    parts.append("</section>")
    return "".join(parts)


def _anchor(title: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-") or "section"


def render_html(report: Report) -> str:
    """The whole report as one HTML document (no external resources)."""
    counts = {s: len(report.filter(severity=s)) for s in Severity}
    summary = "".join(f'<span style="color:{_COLOURS[s]}">{counts[s]} {s.value}</span>'
                      for s in (Severity.ERROR, Severity.WARNING, Severity.INFO))
    meta = " · ".join(f"{_esc(k)}: {_esc(v)}" for k, v in report.meta.items() if not isinstance(v, (dict, list)))
    nav = ""
    if report.sections:
        items = "".join(f'<li><a href="#{_anchor(s.title)}">{_esc(s.title)}</a></li>' for s in report.sections)
        nav = f"<nav><ul>{items}</ul></nav>"
    body = _section_html(Report(report.own_findings, title="Summary", tables=report.tables,
                                figures=report.figures, checks=report.checks), 0) if (
        report.own_findings or report.tables or report.figures or report.checks) else ""
    body += "".join(_section_html(s, 0) for s in report.sections)
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_esc(report.title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_esc(report.title)}</h1><p class=\"meta\">{meta}</p>"
        f'<p class="summary">{summary}</p>{nav}{body}</body></html>'
    )


def write_html(report: Report, path: str | Path) -> Path:
    """Render and write the HTML atomically; returns the path."""
    return write_text_atomic(path, render_html(report))
