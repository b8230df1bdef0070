"""The quick demo report opened in headless Chromium, as a person would at laptop and phone widths.

Every section and figure is present and visible, nothing is logged to the console as an error,
no request leaves the file, and no two texts of a plot overlap (the SVG label boxes, measured
by the browser with getBBox). Full-page screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from dldebug.findings import Report
from dldebug.report.layout import Box, overlapping_pairs

pytestmark = pytest.mark.slow

_TEXT_BOXES_JS = """
const figures = [];
for (const svg of document.querySelectorAll('figure svg')) {
  const boxes = [];
  for (const g of svg.querySelectorAll('g[id*="-dldtext-"], g[id*="-dldmarker-"]')) {
    const b = g.getBBox();
    if (!b.width || !b.height) continue;
    const m = g.getCTM();
    const points = [[b.x, b.y], [b.x + b.width, b.y], [b.x, b.y + b.height], [b.x + b.width, b.y + b.height]]
      .map(([x, y]) => new DOMPoint(x, y).matrixTransform(m));
    boxes.push({id: g.id, x0: Math.min(...points.map(p => p.x)), x1: Math.max(...points.map(p => p.x)),
                y0: Math.min(...points.map(p => p.y)), y1: Math.max(...points.map(p => p.y))});
  }
  figures.push({title: svg.querySelector('title').textContent, boxes: boxes});
}
return figures;
"""

_VISIBLE_JS = """
const el = arguments[0];
el.scrollIntoView({block: 'center', inline: 'nearest'});
const r = el.getBoundingClientRect();
const style = getComputedStyle(el);
const x = Math.min(Math.max(r.left + Math.min(r.width, innerWidth) / 2, 0), innerWidth - 1);
const y = Math.min(Math.max(r.top + Math.min(r.height, innerHeight) / 2, 0), innerHeight - 1);
const top = document.elementFromPoint(x, y);
return {width: r.width, height: r.height, display: style.display, visibility: style.visibility,
        onTop: top !== null && (el === top || el.contains(top))};
"""


def _count(report: Report, attr: str) -> int:
    return len(getattr(report, attr)) + sum(_count(s, attr) for s in report.sections)


def _sections(report: Report) -> int:
    return len(report.sections) + sum(_sections(s) for s in report.sections)


def _screenshot(driver: Any, path: Path) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.execute_script("return document.documentElement.clientWidth")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def _requests(driver: Any) -> list[tuple[str, str]]:
    """(url, url of the document that asked for it) of every request since the last call."""
    out = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            out.append((message["params"]["request"]["url"], message["params"].get("documentURL", "")))
    return out


@pytest.mark.parametrize("width", [1280, 390])
def test_demo_report_in_chromium(quick_demo: tuple[Path, int], chromium: Any, screenshot_dir: Path,
                                 width: int) -> None:
    folder, _ = quick_demo
    report = Report.from_json((folder / "report.json").read_text())
    page = (folder / "index.html").resolve().as_uri()
    driver = chromium(width)
    _requests(driver)  # drain what the browser fetched for itself at start-up (its own chrome:// pages)
    driver.get(page)
    assert driver.title == report.title

    sections = driver.find_elements("css selector", "section")
    assert len(sections) == _sections(report) and all(s.is_displayed() for s in sections)
    figures = driver.find_elements("css selector", "figure svg")
    assert len(figures) == _count(report, "figures") > 10
    for svg in figures:
        seen = driver.execute_script(_VISIBLE_JS, svg)
        assert seen["onTop"] and seen["visibility"] == "visible" and seen["display"] != "none", seen
        assert seen["width"] >= 300 and seen["height"] >= 150, seen  # readable size, even on a phone

    # the page itself never scrolls sideways (wide tables and plots scroll inside their own box)
    assert driver.execute_script("return document.documentElement.scrollWidth <= innerWidth + 1")
    missing = driver.execute_script(
        "return [...document.querySelectorAll('a[href^=\"#\"]')].map(a => a.getAttribute('href').slice(1))"
        ".filter(id => !document.getElementById(id))")
    assert missing == []

    texts = driver.execute_script(_TEXT_BOXES_JS)
    assert len(texts) == len(figures)
    for figure in texts:
        boxes = [Box(b["x0"], b["y0"], b["x1"], b["y1"]) for b in figure["boxes"]]
        assert len(boxes) >= 4, figure["title"]  # title, axis labels, ticks: the check is not vacuous
        clashes = [(figure["boxes"][i]["id"], figure["boxes"][j]["id"])
                   for i, j in overlapping_pairs(boxes, tolerance=0.5)]
        assert clashes == [], figure["title"]
    lr_too_high = next(f for f in texts if f["title"].startswith("Learning rate far too high"))
    assert sum("-dldmarker-" in b["id"] for b in lr_too_high["boxes"]) == 2  # two findings at one step

    _screenshot(driver, screenshot_dir / f"demo-{width}.png")
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    requests = _requests(driver)
    assert [u for u, document in requests if document == page and u != page and not u.startswith("data:")] == []
    assert [u for u, _ in requests if u.split(":")[0] in ("http", "https", "ws", "wss", "ftp")] == []
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
