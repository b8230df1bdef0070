"""The HTML report: structure, links, folding, lessons, accessible colours and non-overlapping plot labels."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dldebug import Figure, Finding, Report, Series, Severity, Span, Table
from dldebug.report.layout import Box, assign_lanes, overlapping_pairs
from dldebug.report.lessons import LESSONS
from dldebug.report.style import LINE_COLOURS, SEVERITY_COLOURS, contrast_ratio
from dldebug.report.svg import draw_figure

DOCS = Path(__file__).resolve().parents[2] / "docs"


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.links: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append((tag, found))
        if found.get("id"):
            self.ids.append(str(found["id"]))
        href = found.get("href") or ""
        if href.startswith("#"):
            self.links.append(href[1:])


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def _monitor_like(steps: int = 40) -> Report:
    losses = [2.0] * 10 + [2.0 * 0.9 ** k for k in range(steps - 10)]
    figure = Figure("monitor.loss", title="Training loss", series=(Series("loss", range(steps), losses),),
                    spans=(Span(0, 9, "loss.plateau", Severity.INFO),),
                    markers=((30, "loss.nonfinite"), (30, "monitor.nonfinite_module")), xlabel="step", ylabel="loss")
    layers = Table("monitor.layers", ("module", "output norm"), (("features.0", 1.0), ("classifier.3", 2.0)))
    return Report([Finding("monitor.nonfinite_module", Severity.ERROR, "first NaN in classifier.3",
                           {"module": "classifier.3", "step": 30}, fix="lower the lr"),
                   Finding("loss.plateau", Severity.INFO, "a plateau that broke", {"start_step": 0}, lesson=2)],
                  title="Training monitor", figures=(figure,), tables=(layers,), meta={"steps_observed": steps})


def test_document_links_resolve_and_ids_are_unique(full_report: Report) -> None:
    demo_like = Report.merge([_monitor_like(), full_report, _monitor_like()], title="several")
    page = _parse(demo_like.to_html())
    assert len(page.ids) == len(set(page.ids))  # also across the SVGs (their ids are prefixed)
    assert page.links and set(page.links) <= set(page.ids)
    summary_links = re.findall(r'<li><a href="#([^"]+)"><code>([^<]+)</code>', demo_like.to_html())
    assert len(summary_links) == len(demo_like.findings)  # every finding is listed, linking to its section
    assert ("training-monitor-2", "monitor.nonfinite_module") in summary_links


def test_self_contained_with_a_policy_that_blocks_every_request(full_report: Report) -> None:
    text = full_report.to_html()
    assert "default-src 'none'" in text and '<link rel="icon" href="data:,">' in text
    assert not re.search(r'(src|href)="(https?:)?//', text) and "<script" not in text
    assert text.count("<svg") == 2 and 'role="img"' in text and "<title id=" in text


def test_to_html_writes_the_same_document(tmp_path: Path, full_report: Report) -> None:
    path = full_report.to_html(tmp_path / "r.html")
    assert path.read_text(encoding="utf-8") == full_report.to_html()


def test_a_report_with_nothing_to_say_is_short() -> None:
    table = Table("monitor.layers", ("module", "output norm"), tuple((f"layer{i}", 1.0) for i in range(80)))
    text = Report(title="Training monitor", tables=(table,), meta={"steps_observed": 500}).to_html()
    assert "No problem found in 500 steps." in text
    assert re.search(r'<details class="table"><summary>table <code>monitor.layers</code> &middot; 80 rows '
                     r"&times; 2 columns &middot; holds no finding</summary>", text)


def test_a_table_naming_a_finding_is_open_and_the_lesson_is_explained() -> None:
    text = _monitor_like().to_html()
    assert '<details class="table" open><summary>table <code>monitor.layers</code>' in text
    assert f"Lesson 2: {LESSONS[2].title}" in text and "No problem found" not in text
    assert "<strong>Fix:</strong> lower the lr" in text


def test_the_lessons_index_links_each_lesson_to_its_sections() -> None:
    sections = [Report(title="transfer", meta={"lessons": [4]}), Report(title="ctc", meta={"lessons": [8]})]
    text = Report.merge(sections).to_html()
    assert '<td>4</td><td>Transfer learning: keep the generic layers, drop the task-specific ones</td>' \
           '<td><a href="#transfer">transfer</a></td>' in text
    assert "<td>1</td><td>Equivariance vs invariance</td><td>not exercised</td>" in text


def test_two_findings_at_one_step_get_two_labels_that_do_not_overlap() -> None:
    drawn = draw_figure(_monitor_like().figures[0], uid="t")
    assert drawn.overlaps == 0 and drawn.unlabelled == ()
    assert len(re.findall(r'<g id="t-dldmarker-\d+"', drawn.svg)) == 2
    assert not re.search(r'<svg[^>]*\swidth="', drawn.svg)  # sized by CSS, scales to the page


def test_crowded_markers_never_overlap_and_the_rest_are_listed() -> None:
    markers = tuple((10 + k * 0.2, f"finding.number_{k}") for k in range(14))
    fig = Figure("crowded", series=(Series("loss", range(40), [1.0] * 40),), markers=markers, xlabel="step",
                 ylabel="loss")
    drawn = draw_figure(fig, uid="c")
    assert drawn.overlaps == 0
    assert 0 < len(drawn.unlabelled) < len(markers)
    assert len(re.findall(r'<g id="c-dldmarker-\d+"', drawn.svg)) == len(markers) - len(drawn.unlabelled)
    assert "Markers without a label in the plot: finding.number_" in Report(figures=(fig,)).to_html()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 500), st.floats(1, 120)), min_size=1, max_size=30),
       st.integers(1, 6))
def test_lanes_never_overlap_and_stay_inside(labels: list[tuple[float, float]], lanes: int) -> None:
    anchors, widths = [a for a, _ in labels], [w for _, w in labels]
    placed = assign_lanes(anchors, widths, left=0, right=500, gap=4, max_lanes=lanes)
    spans: dict[int, list[tuple[float, float]]] = {lane: [] for lane in range(lanes)}
    for k, p in enumerate(placed):
        if p is not None:
            assert p.x0 >= 0 and p.x0 + widths[k] <= 500 + 1e-9 and 0 <= p.lane < lanes
            spans[p.lane].append((p.x0 - 2, p.x0 + widths[k] + 2))  # half the gap on each side
    boxes = [Box(a, lane * 10, b, lane * 10 + 9) for lane, pairs in spans.items() for a, b in pairs]
    assert overlapping_pairs(boxes) == []
    for k, p in enumerate(placed):  # a label is dropped only when every lane was taken where it goes
        if p is None:
            x0 = min(max(anchors[k] - widths[k] / 2, 0), max(500 - widths[k], 0))
            assert all(any(a < x0 + widths[k] + 2 and x0 - 2 < b for a, b in spans[lane]) for lane in spans)


@pytest.mark.parametrize("colour", list(SEVERITY_COLOURS.values()))
def test_severity_colours_are_readable_text(colour: str) -> None:
    assert contrast_ratio(colour) >= 4.5 and contrast_ratio("#ffffff", colour) >= 4.5  # on white and as a badge


@pytest.mark.parametrize("colour", LINE_COLOURS)
def test_plot_lines_meet_non_text_contrast(colour: str) -> None:
    assert contrast_ratio(colour) >= 3.0


def test_lesson_texts_match_docs_lessons() -> None:
    text = (DOCS / "lessons.md").read_text(encoding="utf-8")
    found = re.findall(r"^## (\d+)\. (.+?)\n(.*?)(?=^## |\nReferences)", text, flags=re.S | re.M)
    assert [int(n) for n, _, _ in found] == list(LESSONS)
    for number, title, body in found:
        assert LESSONS[int(number)].title == title.strip()
        assert LESSONS[int(number)].explanation == " ".join(body.split())
