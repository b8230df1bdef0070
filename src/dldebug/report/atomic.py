"""Atomic file writes: a temp file in the target folder, fsync, then rename.

An interrupted run (exception, Ctrl-C, full disk) never leaves a half-written
report: the old file stays intact and the temp file is removed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from dldebug.errors import FileFormatError


def write_with(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(fileobj)`` on a temp file next to ``path`` and rename it into place."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileFormatError(f"cannot create the output folder: {exc.strerror}.", path=target.parent) from None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, _final_mode(target))  # mkstemp makes 0600; a report should read like any file
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return target


def _final_mode(target: Path) -> int:
    """The existing file's permissions, or the default for a new file under the current umask."""
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    def write(handle: BinaryIO) -> None:
        handle.write(data)

    return write_with(path, write)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))
