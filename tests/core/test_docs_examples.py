"""The documentation's examples run: docs/reports.md as doctests, and every block of the README's tour."""

from __future__ import annotations

import contextlib
import doctest
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tour_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("## The tour")
    tour = readme[start:readme.index("\n## ", start + 1)]
    return re.findall(r"```python\n(.*?)```", tour, flags=re.S)


def test_reports_page_doctests_pass() -> None:
    result = doctest.testfile(str(ROOT / "docs" / "reports.md"), module_relative=False,
                              optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 15 and result.failed == 0


def test_the_tour_has_one_block_per_lesson() -> None:
    assert len(_tour_blocks()) == 12  # lessons 1-11 and the pre-flight doctor


@pytest.mark.parametrize("index", range(12))
def test_tour_block_runs(index: int) -> None:
    code = _tour_blocks()[index]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(code, f"README tour block {index + 1}", "exec"), {"__name__": "__tour__"})
    assert out.getvalue().strip()  # every block shows its result


def test_hugging_face_page_example_runs_and_finds_nothing() -> None:
    pytest.importorskip("transformers")
    page = (ROOT / "docs" / "huggingface.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert blocks
    for code in blocks:
        namespace: dict = {"__name__": "__hf_docs__"}
        exec(compile(code, "docs/huggingface.md", "exec"), namespace)
        assert [f.check for f in namespace["report"].filter(min_severity="warning")] == []
        assert len(namespace["report"].checks) >= 8
