"""What a comparison did not compare: each unpaired layer of either model and why, and the coverage.

A layer is *plumbing* when it has no counterpart a port must have (ONNX ``Shape``,
``Reshape``, ``Transpose``, a residual ``Add``) or is a no-op at inference
(Dropout, Identity): those are counted by type, not listed. Every other unpaired
layer is listed with a reason. The coverage is the share of layers with weights
(and of all computing layers) that were paired, per model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dldebug.compare.matching import LayerPair, Matching
from dldebug.compare.records import Capture, LayerRecord, family

__all__ = ["Coverage", "measure_coverage", "unpaired_between"]

_PLUMBING = frozenset({"other"})
_NO_OPS = frozenset({"dropout", "identity", "flatten"})  # cannot change a value (a flatten only re-orders)


@dataclass(frozen=True)
class Coverage:
    """Unpaired layers with reasons and the paired shares (``weights_a`` = paired share of a's weighted layers)."""

    unpaired_a: list[dict[str, str]]
    unpaired_b: list[dict[str, str]]
    summary: dict[str, Any]


def _covered(pairs: list[LayerPair], side: str) -> set[int]:
    out: set[int] = set()
    for p in pairs:
        out |= {id(p.a), id(p.a_feed)} if side == "a" else {id(p.b), id(p.b_feed)}
    return out


def _computing(capture: Capture) -> list[LayerRecord]:
    return [r for r in capture.records if r.kind not in _PLUMBING | _NO_OPS]


def _reason(record: LayerRecord, other: Capture, other_name: str, weights_left: bool) -> str:
    if record.output is None:
        return "its output is not a tensor"
    kinds = {family(r.kind) for r in other.records}
    if family(record.kind) not in kinds:
        return f"model {other_name} has no {record.kind} layer (fused, folded or constant-folded by the converter?)"
    if record.parameterised and not weights_left:
        return f"no unpaired {record.kind} layer of {other_name} has weights of the same shape"
    return f"no unpaired {record.kind} layer of {other_name} at the same place in the execution order"


def _unpaired(capture: Capture, covered: set[int], other: Capture, other_name: str,
              other_covered: set[int]) -> list[dict[str, str]]:
    out = []
    for record in _computing(capture):
        if id(record) in covered:
            continue
        shape = record.params.get("weight")
        weights_left = any(id(r) not in other_covered and family(r.kind) == family(record.kind)
                           and (shape is None or r.params.get("weight") is None
                                or r.params["weight"].shape == shape.shape) for r in other.records)
        out.append({"layer": record.name, "type": record.type_name, "kind": record.kind,
                    "reason": _reason(record, other, other_name, weights_left)})
    return out


def _share(records: list[LayerRecord], covered: set[int]) -> float:
    return 1.0 if not records else sum(id(r) in covered for r in records) / len(records)


def _plumbing(capture: Capture) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in capture.records:
        if r.kind in _PLUMBING | _NO_OPS:
            counts[r.type_name] = counts.get(r.type_name, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def measure_coverage(ca: Capture, cb: Capture, matching: Matching) -> Coverage:
    """Unpaired layers of both models with reasons, and the paired shares."""
    cov_a, cov_b = _covered(matching.pairs, "a"), _covered(matching.pairs, "b")
    summary = {
        "weights_a": _share([r for r in ca.records if r.parameterised], cov_a),
        "weights_b": _share([r for r in cb.records if r.parameterised], cov_b),
        "layers_a": _share(_computing(ca), cov_a), "layers_b": _share(_computing(cb), cov_b),
        "weighted_layers_a": sum(r.parameterised for r in ca.records),
        "weighted_layers_b": sum(r.parameterised for r in cb.records),
        "plumbing_a": _plumbing(ca), "plumbing_b": _plumbing(cb),
    }
    return Coverage(_unpaired(ca, cov_a, cb, "b", cov_b), _unpaired(cb, cov_b, ca, "a", cov_a), summary)


def unpaired_between(ca: Capture, cb: Capture, pairs: list[LayerPair]) -> list[list[str]]:
    """For each pair, and for the output after the last one, the unpaired computing layers just before it.

    Names of b's layers end in `` (b)``. Element ``i`` lists what lies between pair ``i - 1`` and pair ``i``.
    """
    out: list[list[str]] = []
    for side, capture in (("a", ca), ("b", cb)):
        order = {id(r): i for i, r in enumerate(capture.records)}
        covered = _covered(pairs, side)
        previous = -1
        gaps = []
        for pair in [*pairs, None]:
            if pair is None:
                start = len(capture.records)
            else:
                feed = pair.a_feed if side == "a" else pair.b_feed
                start = order.get(id(feed), previous + 1)
            between = [r.name + ("" if side == "a" else " (b)") for r in capture.records[previous + 1:start]
                       if id(r) not in covered and r.kind not in _PLUMBING | _NO_OPS]
            gaps.append(between)
            if pair is not None:
                last = pair.a if side == "a" else pair.b
                previous = max(previous, order.get(id(last), start))
        out = gaps if not out else [x + y for x, y in zip(out, gaps, strict=True)]
    return out
