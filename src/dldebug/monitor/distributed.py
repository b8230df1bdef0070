"""Bring every rank's findings to rank 0 under torch.distributed, with a bounded wait.

Each rank writes its findings (small JSON) into the process group's key-value store; rank 0 waits
for the others at most ``timeout`` seconds, so a rank that crashed or hangs costs a bounded wait
and a ``monitor.rank_missing`` finding, never a hang. Other ranks do not wait at all. No collective
operation is used: a rank that raised cannot block the others inside the monitor.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from typing import Any

import torch.distributed as dist

from dldebug.findings import Finding, Severity

__all__ = ["gather_findings", "merge_rank_findings", "rank_and_world"]

_POLL = 0.05  # seconds between looks at the store while rank 0 waits


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


#: Within one step a module's output comes before the loss, the loss before the gradients, and the
#: gradients before the updated parameters.
_CAUSAL_ORDER = {"output": 0, "loss": 1, "gradient": 2, "parameters": 3}


def _order(finding: dict[str, Any]) -> tuple[float, int, float]:
    """(first step, causal order within the step, wall-clock time): the smallest is where a phenomenon began.

    At one step a NaN in a module's output on one rank comes before the NaN gradients the
    all-reduce brings to the others; the time breaks ties between failures at the same step
    (the rank that raised first is the cause, the others failed waiting for it).
    """
    evidence = finding.get("evidence") or {}
    step = next((float(evidence[k]) for k in ("step", "start_step") if isinstance(evidence.get(k), (int, float))),
                float("inf"))
    when = evidence.get("failed_at")
    causal = _CAUSAL_ORDER.get(str(evidence.get("where")), len(_CAUSAL_ORDER))
    return step, causal, float(when) if isinstance(when, (int, float)) else float("inf")


def merge_rank_findings(per_rank: Sequence[Sequence[dict[str, Any]] | None]) -> list[Finding]:
    """One finding per check id: the earliest rank's (by step), with every affected rank named.

    Args:
        per_rank: for each rank, its findings as dicts (``Finding.to_dict``), or None when the
            rank did not report (a ``monitor.rank_missing`` warning names it).

    Returns:
        The merged findings; evidence gains ``rank`` (where it appeared first), ``ranks`` and ``world_size``.

    Example:
        >>> nan = {"check": "loss.nonfinite", "severity": "error", "message": "nan", "evidence": {"step": 3}}
        >>> late = dict(nan, evidence={"step": 4})
        >>> merge_rank_findings([[late], [nan]])[0].evidence["rank"]
        1
    """
    by_check: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for rank, findings in enumerate(per_rank):
        for finding in findings or ():
            by_check.setdefault(finding["check"], []).append((rank, finding))
    merged = []
    for entries in by_check.values():
        rank, first = min(entries, key=lambda e: (*_order(e[1]), e[0]))
        ranks = sorted({r for r, _ in entries})
        evidence = dict(first.get("evidence") or {})
        evidence.update(rank=rank, ranks=",".join(str(r) for r in ranks), world_size=len(per_rank))
        merged.append(Finding.from_dict({**first, "message": f"rank {rank}: {first['message']}",
                                         "evidence": evidence}))
    missing = [rank for rank, findings in enumerate(per_rank) if findings is None]
    if missing:
        merged.append(_missing_finding(missing, len(per_rank)))
    return merged


def _missing_finding(missing: list[int], world_size: int) -> Finding:
    names = ", ".join(str(r) for r in missing)
    return Finding(
        "monitor.rank_missing", Severity.WARNING,
        f"rank(s) {names} of {world_size} sent no findings before rank 0 stopped waiting: they crashed, hang or "
        "did not call report()/finish(); their findings are missing here.",
        {"missing_ranks": names, "world_size": world_size},
        fix="Look at those ranks' own logs. Every rank must end with monitor.finish() (the callbacks do it); "
            "raise gather_timeout= if some ranks finish much later than rank 0.",
    )


def gather_findings(findings: list[Finding], *, key: str, timeout: float) -> tuple[list[Finding], dict[str, Any]]:
    """All ranks' findings merged on rank 0; unchanged in one process.

    Args:
        findings: this rank's findings.
        key: the same on every rank for the same report (a monitor id and a report number).
        timeout: the longest rank 0 waits for the other ranks, in seconds.

    Returns:
        (findings, meta): on rank 0 the merged findings; on other ranks their own, unmerged.
        ``meta`` has ``rank``, ``world_size`` and, on rank 0, ``ranks_reported``.
    """
    rank, world = rank_and_world()
    if world < 2:
        return findings, {}
    meta: dict[str, Any] = {"rank": rank, "world_size": world}
    own = [f.to_dict() for f in findings]
    store = _store()
    if store is None:  # no key-value store to use: fall back to a (blocking) collective
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, own)
        return (merge_rank_findings(gathered) if rank == 0 else findings), meta
    _publish(store, f"{key}/{rank}", own)
    if rank != 0:
        return findings, meta
    per_rank: list[list[dict[str, Any]] | None] = [own] + [None] * (world - 1)
    deadline = time.monotonic() + timeout
    for other in range(1, world):
        per_rank[other] = _wait_for(store, f"{key}/{other}", deadline)
    meta["ranks_reported"] = sum(p is not None for p in per_rank)
    return merge_rank_findings(per_rank), meta


def _store() -> Any:
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:  # a backend or torch version without one
        return None


def _publish(store: Any, key: str, findings: list[dict[str, Any]]) -> None:
    with contextlib.suppress(Exception):  # rank 0 (which serves the store) is gone: nobody is waiting any more
        store.set(key, json.dumps(findings))


def _wait_for(store: Any, key: str, deadline: float) -> list[dict[str, Any]] | None:
    """The findings another rank published under ``key``, or None once the deadline passed.

    Polls ``store.check`` rather than ``store.wait(timeout)``: it keeps one deadline for all
    ranks and behaves the same on every store type.
    """
    while True:
        try:
            if store.check([key]):
                return list(json.loads(store.get(key)))
        except Exception:
            return None
        if time.monotonic() >= deadline:
            return None
        time.sleep(min(_POLL, max(0.0, deadline - time.monotonic())))

