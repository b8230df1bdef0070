"""Pair the layers of two models whose names differ.

Order of precedence: an explicit ``mapping`` (a name -> b name), equal names
(a PyTorch module and the ONNX nodes exported from it), then the execution order
of parameterised layers (conv, dense, norms, recurrent) with compatible kinds and
weight shapes; the layers in between (activations, pools, flatten) are paired by
kind inside each gap. Every pair's weights are compared up to the known layout
transforms; a BatchNorm folded into the preceding conv (optimised ONNX) and a
Keras activation fused into its layer are recognised. What stays unpaired is
listed, never dropped silently.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from dldebug.compare.folding import FoldCheck, check_affine, check_fold
from dldebug.compare.layout import flatten_permutation
from dldebug.compare.records import Capture, LayerRecord, family
from dldebug.compare.weight_memo import remembered
from dldebug.errors import LayerNotFoundError

__all__ = ["LayerPair", "Matching", "match_layers", "weight_relation"]

_IGNORED = frozenset({"other", "dropout", "identity"})  # plumbing and no-ops at inference are not paired


@dataclass
class LayerPair:
    """Two layers judged to compute the same thing; ``a``/``b`` are the records whose outputs are compared.

    ``a_feed``/``b_feed`` name the layers whose input starts the pair (they differ from
    ``a``/``b`` when an activation is fused or a BatchNorm folded).
    """

    a: LayerRecord
    b: LayerRecord
    a_feed: LayerRecord
    b_feed: LayerRecord
    how: str
    weights: str = "n/a"
    note: str = ""
    fold: dict[str, object] | None = None  # a folded BatchNorm's check (eps_a/eps_b as a's and b's)

    @property
    def a_name(self) -> str:
        return self.a.name if self.a_feed is self.a else f"{self.a_feed.name}+{self.a.name}"

    @property
    def b_name(self) -> str:
        return self.b.name if self.b_feed is self.b else f"{self.b_feed.name}+{self.b.name}"


@dataclass
class Matching:
    pairs: list[LayerPair] = field(default_factory=list)
    unmatched_a: list[LayerRecord] = field(default_factory=list)
    unmatched_b: list[LayerRecord] = field(default_factory=list)


_Add = Callable[[LayerRecord, LayerRecord, str], "LayerPair"]


def _close(x: np.ndarray, y: np.ndarray) -> bool:
    """``np.allclose(x, y, rtol=1e-5, atol=1e-6)`` for same-shape arrays, with two exact shortcuts.

    Weights that differ usually differ from the first elements on, and weights a converter copied
    are usually bit-identical: a leading slice that is not close decides False, equality decides True.
    """
    if x.shape != y.shape:
        return False
    head_x, head_y = x.flat[:64], y.flat[:64]
    if not np.allclose(head_x, head_y, rtol=1e-5, atol=1e-6):
        return False
    return bool(np.array_equal(x, y) or np.allclose(x, y, rtol=1e-5, atol=1e-6))


def weight_relation(a: LayerRecord, b: LayerRecord, flatten_shapes: Sequence[tuple[tuple[int, ...], str]]) -> str:
    """How b's weights relate to a's, e.g. ``"same"``, ``"same up to NHWC-flatten permutation"``, ``"differ"``.

    ``"same as stored, flatten order not permuted"`` means b copied a dense layer's weights
    as they are although the flatten before it orders features differently in b.
    """
    if not a.params or not b.params:
        return "n/a"
    wa, wb = a.params.get("weight"), b.params.get("weight")
    others = [k for k in a.params if k != "weight" and k in b.params]
    rest_same = all(_close(a.params[k], b.params[k]) for k in others)
    if wa is None or wb is None:
        if not others:  # e.g. a Keras GRU (kernel, recurrent, bias) vs PyTorch (weight_ih, weight_hh, ...)
            return "n/a"
        return "same" if rest_same else "differ"
    if wa.shape != wb.shape:
        return f"shape differs {list(wa.shape)} vs {list(wb.shape)}"
    permuted = None
    if a.kind == "dense" and a.layout != b.layout and wa.ndim == 2:
        for shape, layout in flatten_shapes:
            spatial = len(shape) >= 2 and shape[0] * shape[1] > 1
            if layout == a.layout and spatial and int(np.prod(shape)) == wa.shape[1]:
                permuted = wa[:, flatten_permutation(shape, a.layout)]
                break
    if permuted is not None and _close(permuted, wb):
        return "same up to NHWC-flatten permutation" if rest_same else "differ (bias)"
    if _close(wa, wb):
        if not rest_same:
            return "differ (bias or statistics)"
        return "same as stored, flatten order not permuted" if permuted is not None else "same"
    return "differ"


def _compatible(x: LayerRecord, y: LayerRecord) -> bool:
    if family(x.kind) != family(y.kind):
        return False
    wx, wy = x.params.get("weight"), y.params.get("weight")
    if wx is not None and wy is not None and wx.shape != wy.shape:
        return False
    return x.output is None or y.output is None or x.output.size == y.output.size


def match_layers(ca: Capture, cb: Capture, mapping: Mapping[str, str] | None = None) -> Matching:
    """Pair the layers of two captures (see the module docstring for the rules).

    Raises:
        LayerNotFoundError: a name in ``mapping`` is not a layer of its model.
    """
    ra = [r for r in ca.records if r.kind not in _IGNORED and r.output is not None]
    rb = [r for r in cb.records if r.kind not in _IGNORED and r.output is not None]
    flatten_shapes = [(r.flatten_from, r.layout) for r in ca.records + cb.records if r.flatten_from]
    shapes_key = tuple(flatten_shapes)
    pos_a, pos_b = {id(r): i for i, r in enumerate(ra)}, {id(r): i for i, r in enumerate(rb)}
    pairs: dict[int, LayerPair] = {}
    used_b: set[int] = set()

    def add(x: LayerRecord, y: LayerRecord, how: str) -> LayerPair:
        relation = remembered("relation", (x, y), shapes_key, lambda: weight_relation(x, y, flatten_shapes))
        pair = LayerPair(x, y, x, y, how, relation)
        pairs[id(x)] = pair
        used_b.add(id(y))
        return pair

    for a_name, b_name in (mapping or {}).items():
        add(_find(ra, a_name, "a"), _find(rb, b_name, "b"), "mapping")
    b_names = {r.name: r for r in rb}
    for x in ra:
        y = b_names.get(x.name)
        if id(x) not in pairs and y is not None and id(y) not in used_b and _compatible(x, y):
            add(x, y, "name")
    _match_by_order(ra, rb, pairs, used_b, add, _Folded(ra, rb, pairs, pos_a, pos_b))
    _fold_batchnorms(ra, rb, pairs, used_b, pos_a, pos_b)
    _check_affines(pairs)
    _merge_fused(ra, rb, pairs, used_b, pos_a, pos_b)
    _match_gaps(ra, rb, pairs, used_b, pos_b, add)
    ordered = [pairs[id(r)] for r in ra if id(r) in pairs]
    covered_a = {id(p.a) for p in ordered} | {id(p.a_feed) for p in ordered}
    covered_b = {id(p.b) for p in ordered} | {id(p.b_feed) for p in ordered}
    return Matching(ordered, [r for r in ra if id(r) not in covered_a], [r for r in rb if id(r) not in covered_b])


def _find(records: list[LayerRecord], name: str, side: str) -> LayerRecord:
    for r in records:
        if r.name == name:
            return r
    close = difflib.get_close_matches(name, [r.name for r in records], n=5)
    raise LayerNotFoundError(f"mapping names layer {name!r}, which model {side} does not have; "
                             f"close matches: {close or [r.name for r in records][:8]}.")


class _Folded:
    """Is this BatchNorm folded away: right after a conv whose partner has no BatchNorm after it?"""

    def __init__(self, ra: list[LayerRecord], rb: list[LayerRecord], pairs: dict[int, LayerPair],
                 pos_a: dict[int, int], pos_b: dict[int, int]) -> None:
        self.ra, self.rb, self.pairs, self.pos_a, self.pos_b = ra, rb, pairs, pos_a, pos_b

    def __call__(self, bn: LayerRecord, side: str) -> bool:
        records, pos = (self.ra, self.pos_a) if side == "a" else (self.rb, self.pos_b)
        other, other_pos = (self.rb, self.pos_b) if side == "a" else (self.ra, self.pos_a)
        k = pos[id(bn)]
        if family(bn.kind) != "batchnorm" or k == 0 or records[k - 1].kind != "conv":
            return False
        conv = records[k - 1]
        pair = self.pairs.get(id(conv)) if side == "a" else next(
            (p for p in self.pairs.values() if p.b is conv), None)
        if pair is None:
            return False
        partner = pair.b if side == "a" else pair.a
        after = other_pos[id(partner)] + 1
        return after >= len(other) or family(other[after].kind) != "batchnorm"


def _match_by_order(ra: list[LayerRecord], rb: list[LayerRecord], pairs: dict[int, LayerPair],
                    used_b: set[int], add: _Add, folded: Callable[[LayerRecord, str], bool]) -> None:
    pa = [r for r in ra if r.parameterised and id(r) not in pairs]
    pb = [r for r in rb if r.parameterised and id(r) not in used_b]
    i = j = 0
    while i < len(pa) and j < len(pb):
        if folded(pa[i], "a"):
            i += 1
            continue
        if folded(pb[j], "b"):
            j += 1
            continue
        if _compatible(pa[i], pb[j]):
            add(pa[i], pb[j], "order")
            i, j = i + 1, j + 1
            continue
        next_b = next((k for k in range(j + 1, len(pb)) if _compatible(pa[i], pb[k])), None)
        next_a = next((k for k in range(i + 1, len(pa)) if _compatible(pa[k], pb[j])), None)
        if next_b is not None and (next_a is None or next_b - j <= next_a - i):
            j = next_b
        elif next_a is not None:
            i = next_a
        else:
            i, j = i + 1, j + 1


def _fold_evidence(check: FoldCheck | None, bn_in_a: bool) -> tuple[str, dict[str, object] | None]:
    """The fold verdict with eps keyed by side: ``eps_a`` is always a's (the BatchNorm's or the inferred one)."""
    if check is None:
        return "folded (unchecked)", None
    evidence = dict(check.evidence)
    if not bn_in_a:
        evidence["eps_a"], evidence["eps_b"] = evidence.get("eps_b"), evidence["eps_a"]
    return check.weights, evidence


def _fold_batchnorms(ra: list[LayerRecord], rb: list[LayerRecord], pairs: dict[int, LayerPair], used_b: set[int],
                     pos_a: dict[int, int], pos_b: dict[int, int]) -> None:
    """A paired conv whose weights differ, followed on one side only by a BatchNorm: the BN was folded in.

    The folded weights are checked against the BatchNorm (:mod:`dldebug.compare.folding`).
    """
    for key, pair in list(pairs.items()):
        if pair.a.kind != "conv" or pair.b.kind != "conv" or pair.weights.startswith("same"):
            continue
        bn_a = _batchnorm_after(ra, pos_a[id(pair.a)], lambda r: id(r) not in pairs)
        bn_b = _batchnorm_after(rb, pos_b[id(pair.b)], lambda r: id(r) not in used_b)
        if bn_a is not None and bn_b is None:
            del pairs[key]
            weights, fold = _fold_evidence(_fold(pair.a, bn_a, pair.b), bn_in_a=True)
            pairs[id(bn_a)] = LayerPair(bn_a, pair.b, pair.a, pair.b_feed, pair.how, weights,
                                        f"a's {bn_a.name} folded into b's {pair.b.name}", fold)
        elif bn_b is not None and bn_a is None:
            used_b.add(id(bn_b))
            weights, fold = _fold_evidence(_fold(pair.b, bn_b, pair.a), bn_in_a=False)
            pair.b, pair.weights, pair.note, pair.fold = bn_b, weights, f"b's {bn_b.name} folded into a's " \
                f"{pair.a.name}", fold


_FOLD_WINDOW = 16  # records after a conv searched for the BatchNorm reading its output (interleaved branches)


def _batchnorm_after(records: list[LayerRecord], position: int, free: Callable[[LayerRecord], bool]
                     ) -> LayerRecord | None:
    """The unpaired BatchNorm that reads the output of the conv at ``position``, else None.

    Found by its input (the conv's output, value for value): two branches may run their convs first and
    their BatchNorms after (Keras lists ResNet50's ``0_conv, 3_conv, 0_bn, 3_bn``). Where inputs were not
    captured, the record right after the conv, if it is a BatchNorm.
    """
    conv = records[position]
    after = records[position + 1:position + 1 + _FOLD_WINDOW]
    for record in after:
        if record.kind == "batchnorm" and free(record) and _reads(record, conv):
            return record
    if not after:
        return None
    nxt = after[0]
    unknown = nxt.input is None or conv.output is None  # nothing to read the data flow from
    return nxt if unknown and nxt.kind == "batchnorm" and free(nxt) else None


def _reads(layer: LayerRecord, source: LayerRecord) -> bool:
    """``layer``'s input is ``source``'s output (the same values in the same framework)."""
    x, y = layer.input, source.output
    return x is not None and y is not None and x.shape == y.shape and bool(np.array_equal(x, y))


def _fold(conv: LayerRecord, bn: LayerRecord, folded: LayerRecord) -> FoldCheck | None:
    return remembered("fold", (conv, bn, folded), repr(bn.config), lambda: check_fold(conv, bn, folded))


def _affine(bn: LayerRecord, affine: LayerRecord) -> FoldCheck | None:
    return remembered("affine", (bn, affine), repr(bn.config), lambda: check_affine(bn, affine))


def _check_affines(pairs: dict[int, LayerPair]) -> None:
    """A BatchNorm paired with a per-channel Mul/Add: check the scale against gamma / sqrt(var + eps)."""
    for pair in pairs.values():
        kinds = (pair.a.kind, pair.b.kind)
        if kinds == ("batchnorm", "affine"):
            pair.weights, pair.fold = _fold_evidence(_affine(pair.a, pair.b), bn_in_a=True)
        elif kinds == ("affine", "batchnorm"):
            pair.weights, pair.fold = _fold_evidence(_affine(pair.b, pair.a), bn_in_a=False)


def _merge_fused(ra: list[LayerRecord], rb: list[LayerRecord], pairs: dict[int, LayerPair], used_b: set[int],
                 pos_a: dict[int, int], pos_b: dict[int, int]) -> None:
    """A Keras layer with a fused activation is compared after the other model's separate activation."""
    for key, pair in list(pairs.items()):
        k = pos_b[id(pair.b)] + 1
        if pair.a.fused_activation and k < len(rb) and rb[k].kind == pair.a.fused_activation \
                and id(rb[k]) not in used_b:
            pair.b = rb[k]
            used_b.add(id(rb[k]))
            pair.note = f"a's {pair.a.fused_activation} is fused into {pair.a.name}"
        k = pos_a[id(pair.a)] + 1
        if pair.b.fused_activation and k < len(ra) and ra[k].kind == pair.b.fused_activation \
                and id(ra[k]) not in pairs:
            del pairs[key]
            pair.a = ra[k]
            pairs[id(ra[k])] = pair
            pair.note = f"b's {pair.b.fused_activation} is fused into {pair.b.name}"


def _match_gaps(ra: list[LayerRecord], rb: list[LayerRecord], pairs: dict[int, LayerPair], used_b: set[int],
                pos_b: dict[int, int], add: _Add) -> None:
    """Pair the unpaired layers between consecutive pairs by kind, in order."""
    start_b = 0
    covered = {id(p.a_feed) for p in pairs.values()}
    for x in ra:
        pair = pairs.get(id(x))
        if pair is not None:
            start_b = max(start_b, pos_b[id(pair.b)] + 1)
            continue
        if id(x) in covered:
            continue
        limit = next((k for k in range(start_b, len(rb)) if id(rb[k]) in used_b), len(rb))
        y_index = next((k for k in range(start_b, limit) if family(rb[k].kind) == family(x.kind)), None)
        if y_index is None:
            continue
        add(x, rb[y_index], "order")
        start_b = y_index + 1
