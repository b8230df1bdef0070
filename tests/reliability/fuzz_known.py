"""Crashes the fuzzer found in modules this suite does not own, listed in docs/reliability.md.

The CI sample still fails on any *other* crash; a target whose only crashes are listed here is
marked xfail (not strict) with the entry, so the fix by the owning module turns it green.
Keys are ``Type@file`` (no line number, so edits elsewhere in the file keep the match).
"""

from __future__ import annotations

KNOWN: dict[str, dict[str, str]] = {
}


def unknown_crashes(target: str, signatures: list[str]) -> list[str]:
    """The crash signatures of ``target`` not listed in :data:`KNOWN`."""
    known = KNOWN.get(target, {})
    return [s for s in signatures if s.rsplit(":", 1)[0] not in known]
