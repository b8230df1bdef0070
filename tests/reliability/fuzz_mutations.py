"""Byte-level damage for fuzzed files: truncation, flipped and inserted bytes, spliced chunks.

A :class:`FileCase` is a small folder of files written for one case; ``pristine``
says whether every file is exactly what its generator produced, so the target can
hold a successful read to the generator's expected values (the oracle).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

#: Bytes that matter to parsers: separators, quotes, brackets, NUL, BOM, high bytes.
_INTERESTING = b",;\t\n\r\"'{}[]:0-.eE\x00\xef\xbb\xbf\xff\x80NaInf"


@dataclass(frozen=True)
class Damage:
    """One edit to a byte string; positions are fractions of its length, so any edit fits any size."""

    kind: str
    where: float
    payload: bytes = b""
    size: int = 1

    def apply(self, data: bytes) -> bytes:
        at = min(int(self.where * len(data)), len(data))
        if self.kind == "truncate":
            return data[:at]
        if self.kind == "flip":
            if not data:
                return data
            at = min(at, len(data) - 1)
            return data[:at] + bytes([data[at] ^ (1 << (self.size % 8))]) + data[at + 1:]
        if self.kind == "overwrite":
            return data[:at] + self.payload + data[at + len(self.payload):]
        if self.kind == "insert":
            return data[:at] + self.payload + data[at:]
        if self.kind == "delete":
            return data[:at] + data[at + self.size:]
        if self.kind == "repeat":  # a chunk written twice, as by a resumed writer
            return data[:at] + data[at:at + self.size] + data[at:]
        raise ValueError(self.kind)


_payloads = st.one_of(st.binary(min_size=1, max_size=16),
                      st.lists(st.sampled_from(list(_INTERESTING)), min_size=1, max_size=8).map(bytes))
damages = st.builds(Damage, st.sampled_from(["truncate", "flip", "overwrite", "insert", "delete", "repeat"]),
                    st.floats(0, 1), _payloads, st.integers(1, 64))


def damaged(data: bytes, edits: list[Damage]) -> bytes:
    for edit in edits:
        data = edit.apply(data)
    return data


@dataclass(frozen=True)
class FileCase:
    """Files to write (relative path -> bytes), the path to open, and what a clean read must give."""

    files: tuple[tuple[str, bytes], ...]
    open: str
    expected: Any = None  # the generator's values; None when damaged or not predictable
    edits: tuple[Damage, ...] = ()

    @property
    def pristine(self) -> bool:
        return not self.edits and self.expected is not None

    def write(self, root: Path) -> Path:
        for relative, data in self.files:
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return root / self.open

    def __repr__(self) -> str:  # the reproducer printed for a crash
        shown = ", ".join(f"{name!r}: {data[:200]!r}{'...' if len(data) > 200 else ''} ({len(data)} B)"
                          for name, data in self.files)
        return f"FileCase(open={self.open!r}, files={{{shown}}}, edits={list(self.edits)})"


def raw_file(name: str, opened: str | None = None) -> Callable[[bytes], FileCase]:
    """How a byte-level fuzzer's input becomes a case: the bytes as file ``name`` (opened as ``opened``)."""
    def wrap(data: bytes) -> FileCase:
        return FileCase(((name, data),), opened or name)

    return wrap


@st.composite
def file_cases(draw: Any, valid: st.SearchStrategy[tuple[bytes, Any]], name: str | st.SearchStrategy[str],
               *, damage_rate: float = 0.6, garbage: bool = True) -> FileCase:
    """One file from ``valid`` (content, expected), often damaged, sometimes pure garbage."""
    filename = draw(name) if isinstance(name, st.SearchStrategy) else name
    if garbage and draw(st.integers(0, 19)) == 0:
        return FileCase(((filename, draw(st.binary(max_size=512))),), filename)
    content, expected = draw(valid)
    edits: list[Damage] = []
    if draw(st.floats(0, 1)) < damage_rate:
        edits = draw(st.lists(damages, min_size=1, max_size=4))
    return FileCase(((filename, damaged(content, edits)),), filename, expected, tuple(edits))


def rezip(archive: bytes, edit: Callable[[str, bytes], bytes | None]) -> bytes:
    """Rewrite a zip member by member (``edit`` returns new bytes, or None to drop the member).

    Damage inside members keeps the zip directory valid, so the loader's own parser sees it
    instead of the zip layer's CRC check.
    """
    source = zipfile.ZipFile(io.BytesIO(archive))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = edit(info.filename, source.read(info.filename))
            if data is not None:
                target.writestr(info, data)
    return out.getvalue()


@st.composite
def zip_member_damage(draw: Any, archive: bytes) -> tuple[bytes, tuple[Damage, ...]]:
    """``archive`` with one member damaged, dropped or replaced by garbage (zip directory kept valid)."""
    names = zipfile.ZipFile(io.BytesIO(archive)).namelist()
    victim = draw(st.sampled_from(names))
    action = draw(st.sampled_from(["damage", "drop", "empty"]))
    edits: tuple[Damage, ...] = ()
    if action == "damage":
        edits = tuple(draw(st.lists(damages, min_size=1, max_size=3)))
    marker = Damage("member:" + action + ":" + victim, 0.0)

    def edit(name: str, data: bytes) -> bytes | None:
        if name != victim:
            return data
        return None if action == "drop" else (b"" if action == "empty" else damaged(data, list(edits)))

    return rezip(archive, edit), (marker, *edits)
