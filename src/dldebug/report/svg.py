"""Draw a Figure as inline SVG with matplotlib (Agg): axes labelled, problems marked, no label on another.

Text is drawn as glyph outlines, so the browser shows exactly the boxes matplotlib measured:
marker labels are placed in lanes above the plot from those measured widths
(:func:`dldebug.report.layout.assign_lanes`), and :func:`text_overlaps` re-checks every
text of the finished figure. Ids inside each SVG are prefixed with its own ``uid`` so several
figures can share one HTML page.
"""

from __future__ import annotations

import html
import io
import math
import re
import textwrap
from dataclasses import dataclass
from typing import Any

from dldebug.evidence import Figure
from dldebug.report.layout import Box, assign_lanes, overlapping_pairs
from dldebug.report.style import LINE_COLOURS, LINE_STYLES, MARKER_COLOUR, SPAN_FILLS

__all__ = ["DrawnFigure", "draw_figure", "figure_svg", "text_overlaps"]

_RC: dict[str, Any] = {
    "font.size": 10.5, "axes.titlesize": 11.5, "axes.labelsize": 11, "xtick.labelsize": 10, "ytick.labelsize": 10,
    "legend.fontsize": 9, "svg.hashsalt": "dldebug", "svg.fonttype": "path", "axes.edgecolor": "#333333",
    "axes.linewidth": 0.8,
}
_LABEL_SIZE = 9.5
_MAX_LANES = 4
_LANE_GAP_PX = 6.0
_MAX_ANNOTATED_CELLS = 12


@dataclass(frozen=True)
class DrawnFigure:
    """The SVG markup of a figure and the marker labels that found no lane (listed under the plot)."""

    svg: str
    unlabelled: tuple[tuple[float, str], ...] = ()
    overlaps: int = 0


def figure_svg(fig: Figure, *, uid: str = "fig") -> str:
    """The SVG markup of ``fig`` (see :func:`draw_figure`)."""
    return draw_figure(fig, uid=uid).svg


def draw_figure(fig: Figure, *, uid: str = "fig") -> DrawnFigure:
    """Draw ``fig``: series, shaded spans, dashed markers with labels in non-overlapping lanes, a legend.

    Args:
        fig: the figure described as data.
        uid: a prefix for every id inside the SVG, unique within one page.

    Returns:
        The SVG (no width/height: it scales to its container), the labels that did not fit,
        and the number of text pairs still overlapping (0 unless a figure is pathological).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with matplotlib.rc_context(_RC):  # type: ignore[arg-type]  # plain str keys
        mfig, ax = plt.subplots(figsize=(5.4, 3.4 if fig.matrix is None else 4.4))
        try:
            _draw_data(mfig, ax, fig)
            _decorate(ax, fig)
            unlabelled = _label_markers(mfig, ax, fig)
            overlaps = len(text_overlaps(mfig))
            for k, text in enumerate(_texts(mfig)):
                text.set_gid(text.get_gid() or f"dldtext-{k}")
            buffer = io.StringIO()
            mfig.savefig(buffer, format="svg", metadata={"Date": None})
        finally:
            plt.close(mfig)
    title = fig.title or fig.name
    return DrawnFigure(_scoped(buffer.getvalue(), uid, title), unlabelled, overlaps)


def _draw_data(mfig: Any, ax: Any, fig: Figure) -> None:
    if fig.matrix is not None:
        _draw_matrix(mfig, ax, fig)
    for k, s in enumerate(fig.series):
        colour, dash = LINE_COLOURS[k % len(LINE_COLOURS)], LINE_STYLES[k % len(LINE_STYLES)]
        x = [math.nan if v is None else v for v in s.x]
        y = [math.nan if v is None else v for v in s.y]
        if s.style == "scatter":
            ax.scatter(x, y, s=12, label=s.label, color=colour)
        elif s.style == "bar":
            ax.bar(x, y, label=s.label, color=colour)
        elif s.style == "step":
            ax.step(x, y, where="post", label=s.label, color=colour, linestyle=dash, linewidth=1.4)
        else:
            ax.plot(x, y, label=s.label, color=colour, linestyle=dash, linewidth=1.4,
                    marker="o" if len(x) <= 12 else None, markersize=3.5)
    for span in fig.spans:
        ax.axvspan(span.start, span.end, color=SPAN_FILLS[span.severity], alpha=0.55, label=span.label, zorder=0)
    for x_marker, _ in fig.markers:
        ax.axvline(x_marker, color=MARKER_COLOUR, linestyle="--", linewidth=1.1)


def _draw_matrix(mfig: Any, ax: Any, fig: Figure) -> None:
    assert fig.matrix is not None
    values = [[(math.nan if v is None else float(v)) for v in row] for row in fig.matrix]
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    mfig.colorbar(image, ax=ax)
    rows, cols = len(values), max((len(r) for r in values), default=0)
    if rows <= _MAX_ANNOTATED_CELLS and cols <= _MAX_ANNOTATED_CELLS:
        finite = [v for r in values for v in r if math.isfinite(v)]
        middle = (min(finite) + max(finite)) / 2 if finite else 0.0
        for i, row in enumerate(values):
            for j, v in enumerate(row):
                if math.isfinite(v):
                    ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7,
                            color="#000000" if v > middle else "#ffffff")
        ax.set_xticks(range(cols))
        ax.set_yticks(range(rows))


def _decorate(ax: Any, fig: Figure) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    if fig.logx:
        ax.set_xscale("log")
    if fig.logy:
        ax.set_yscale("log")
        low, high = ax.get_ylim()
        if low > 0 and high / low < 100:  # under two decades: plain numbers read better than 2.3 x 10^0
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.yaxis.set_major_locator(_plain_log_locator())
    ax.set_xlabel(fig.xlabel or ("column" if fig.matrix is not None else "x"))
    ax.set_ylabel(fig.ylabel or ("row" if fig.matrix is not None else "value"))
    ax.set_title("\n".join(textwrap.wrap(fig.title or fig.name, 58)) or fig.name)
    if fig.series or fig.spans:
        ax.legend(loc="best", framealpha=0.92)
    if fig.matrix is None:
        ax.grid(True, alpha=0.3)


def _plain_log_locator() -> Any:
    from matplotlib.ticker import LogLocator

    return LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=8)


def _label_markers(mfig: Any, ax: Any, fig: Figure) -> tuple[tuple[float, str], ...]:
    """Label the markers in lanes above the plot; returns the ones outside the x range or without a lane."""
    markers = list(dict.fromkeys((float(x), label) for x, label in fig.markers))
    mfig.tight_layout()
    low, high = sorted(ax.get_xlim())
    inside = [(x, label) for x, label in markers if low <= x <= high and math.isfinite(x)]
    skipped = [m for m in markers if m not in inside]
    if not inside:
        return tuple(skipped)
    notes = [ax.annotate(label, xy=(x, 1.0), xycoords=("data", "axes fraction"), xytext=(0, 0),
                         textcoords="offset points", ha="left", va="bottom", fontsize=_LABEL_SIZE,
                         color=MARKER_COLOUR, annotation_clip=False) for x, label in inside]
    for k, note in enumerate(notes):
        note.set_gid(f"dldmarker-{k}")
    placements: list[Any] = []
    for _ in range(3):  # the layout moves the axes a little each time; re-place until it is stable
        renderer = mfig.canvas.get_renderer()
        frame = ax.get_window_extent(renderer)
        anchors = [ax.transData.transform((x, 1.0))[0] for x, _ in inside]
        sizes = [note.get_window_extent(renderer) for note in notes]
        placements = assign_lanes(anchors, [s.width for s in sizes], left=frame.x0,
                                  right=mfig.bbox.width - 4, gap=_LANE_GAP_PX, max_lanes=_MAX_LANES)
        height = max(s.height for s in sizes)
        points = 72.0 / mfig.dpi
        for note, anchor, place in zip(notes, anchors, placements, strict=True):
            note.set_visible(place is not None)
            if place is not None:
                note.xyann = ((place.x0 - anchor) * points, (4 + place.lane * (height + 3)) * points)
        lanes = 1 + max((p.lane for p in placements if p is not None), default=0)
        ax.set_title(ax.get_title(), pad=6 + lanes * (height + 3) * points + 2)
        mfig.tight_layout()
        if not any(a.overlaps(b) for a, b in _pairs(_boxes(mfig, notes))):
            break
    skipped += [m for m, p in zip(inside, placements, strict=True) if p is None]
    return tuple(skipped)


def _pairs(boxes: list[Box]) -> list[tuple[Box, Box]]:
    return [(boxes[i], boxes[j]) for i, j in overlapping_pairs(boxes)]


def _boxes(mfig: Any, texts: list[Any]) -> list[Box]:
    renderer = mfig.canvas.get_renderer()
    out = []
    for text in texts:
        extent = text.get_window_extent(renderer)
        out.append(Box(extent.x0, extent.y0, extent.x1, extent.y1))
    return out


def _texts(mfig: Any) -> list[Any]:
    """Every visible, non-empty text the figure draws (titles, axis and tick labels, legend, markers)."""
    from matplotlib.text import Text

    mfig.canvas.draw()  # creates the tick labels that will be drawn
    tick_labels: set[int] = set()
    drawn = []
    for ax in mfig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for tick in (*axis.get_major_ticks(), *axis.get_minor_ticks()):
                tick_labels.update((id(tick.label1), id(tick.label2)))
            drawn += _drawn_tick_labels(axis)
    texts = [t for t in mfig.findobj(Text) if id(t) not in tick_labels] + drawn
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def _drawn_tick_labels(axis: Any) -> list[Any]:
    """The tick labels matplotlib draws: those of ticks inside the view (it keeps others, undrawn)."""
    low, high = sorted(axis.get_view_interval())
    slack = (high - low) * 1e-9
    out = []
    for locs, ticks in ((axis.get_majorticklocs(), axis.get_major_ticks),
                        (axis.get_minorticklocs(), axis.get_minor_ticks)):
        for tick, loc in zip(ticks(len(locs)), locs, strict=True):
            if low - slack <= loc <= high + slack:
                out += [tick.label1, tick.label2]
    return out


def text_overlaps(mfig: Any) -> list[tuple[str, str]]:
    """Pairs of texts of a drawn matplotlib figure whose boxes intersect (more than half a pixel)."""
    texts = _texts(mfig)
    boxes = _boxes(mfig, texts)
    return [(texts[i].get_text(), texts[j].get_text()) for i, j in overlapping_pairs(boxes, tolerance=0.5)]


def _scoped(svg: str, uid: str, title: str) -> str:
    """The <svg> element alone, its ids prefixed with ``uid``, sized by CSS, titled for screen readers."""
    svg = svg[svg.find("<svg"):]
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{uid}-\1"', svg)
    svg = re.sub(r'(xlink:href|href)="#([^"]+)"', rf'\1="#{uid}-\2"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{uid}-\1)", svg)
    head_end = svg.find(">")
    head = re.sub(r'\s(width|height)="[^"]*"', "", svg[:head_end])
    label = f'<title id="{uid}-title">{html.escape(title)}</title>'
    return f'{head} role="img" aria-labelledby="{uid}-title">{label}{svg[head_end + 1:]}'
