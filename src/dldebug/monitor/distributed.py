"""Merge the findings of every rank under torch.distributed, naming the rank where each appeared."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.distributed as dist

from dldebug.findings import Finding

__all__ = ["gather_findings", "merge_rank_findings"]


def _first_step(finding: dict[str, Any]) -> float:
    evidence = finding.get("evidence") or {}
    for key in ("step", "start_step"):
        value = evidence.get(key)
        if isinstance(value, (int, float)):
            return float(value)
    return float("inf")


def merge_rank_findings(per_rank: Sequence[Sequence[dict[str, Any]]]) -> list[Finding]:
    """One finding per check id: the earliest rank's (by step), with every affected rank named.

    Args:
        per_rank: for each rank, its findings as dicts (``Finding.to_dict``).

    Returns:
        The merged findings; evidence gains ``rank`` (where it appeared first) and ``ranks``.

    Example:
        >>> nan = {"check": "loss.nonfinite", "severity": "error", "message": "nan", "evidence": {"step": 3}}
        >>> late = dict(nan, evidence={"step": 4})
        >>> merge_rank_findings([[late], [nan]])[0].evidence["rank"]
        1
    """
    by_check: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for rank, findings in enumerate(per_rank):
        for finding in findings:
            by_check.setdefault(finding["check"], []).append((rank, finding))
    merged = []
    for entries in by_check.values():
        rank, first = min(entries, key=lambda e: (_first_step(e[1]), e[0]))
        ranks = sorted({r for r, _ in entries})
        evidence = dict(first.get("evidence") or {})
        evidence.update(rank=rank, ranks=",".join(str(r) for r in ranks), world_size=len(per_rank))
        merged.append(Finding.from_dict({**first, "message": f"rank {rank}: {first['message']}",
                                         "evidence": evidence}))
    return merged


def gather_findings(findings: list[Finding]) -> tuple[list[Finding], dict[str, Any]]:
    """All ranks' findings merged (a collective: every rank must call it); unchanged in one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return findings, {}
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, [f.to_dict() for f in findings])
    return merge_rank_findings(gathered), {"rank": dist.get_rank(), "world_size": dist.get_world_size()}
