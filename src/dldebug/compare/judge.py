"""Judge one paired layer (or the final output): align b's tensor to a's view, measure, explain.

In shadow mode a layer of b that could not be fed a's input is judged on its
propagated output when its propagated inputs already agree with a's (then the
two runs are the same thing); otherwise it is marked ``not shadowed`` and, if its
propagated output differs, ``diverged, not shadowed``: never silently passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dldebug.compare.comparison import LayerComparison, explanation_dict
from dldebug.compare.explain import explain_pair
from dldebug.compare.layout import best_view
from dldebug.compare.matching import LayerPair
from dldebug.compare.metrics import layer_metrics
from dldebug.compare.records import Capture, Layout

__all__ = ["judge_output", "judge_pair"]

FlattenShapes = Sequence[tuple[tuple[int, ...], Layout]]
_BUG_LABEL = "same as stored, flatten order not permuted"


def _kind(pair: LayerPair) -> str:
    return pair.a.kind if pair.a.kind == pair.b.kind else f"{pair.a.kind}/{pair.b.kind}"


def _measure(row: LayerComparison, out_a: np.ndarray, out_b: np.ndarray, layout_b: Layout, layout_a: Layout,
             flatten_shapes: FlattenShapes, rtol: float, atol: float) -> bool:
    """Fill ``row.metrics``/``row.view``; False when b's tensor cannot be aligned to a's shape."""
    view = best_view(out_b, layout_b, layout_a, out_a, flatten_shapes)
    if view is None:
        return False
    metrics = layer_metrics(out_a, view[1], rtol=rtol, atol=atol)
    row.metrics, row.view = metrics.to_dict(), view[0]
    return True


def _inputs_agree(pair: LayerPair, flatten_shapes: FlattenShapes, rtol: float, atol: float) -> bool:
    """Do the propagated inputs already agree (or does b's layer read only constants)?"""
    a_in, b_in = pair.a_feed.input, pair.b_feed.input
    if b_in is None and pair.b.output is not None and pair.b_feed.framework == "onnx" and not pair.b_feed.inputs:
        return True  # an ONNX layer reading only constants (position ids): nothing upstream can reach it
    if a_in is None or b_in is None:
        return False
    if a_in.dtype.kind in "iub" or b_in.dtype.kind in "iub":
        view = best_view(b_in, pair.b_feed.layout, pair.a_feed.layout, a_in, flatten_shapes)
        return view is not None and bool(np.array_equal(view[1], a_in))
    view = best_view(b_in, pair.b_feed.layout, pair.a_feed.layout, a_in, flatten_shapes)
    return view is not None and layer_metrics(a_in, view[1], rtol=rtol, atol=atol).within


def judge_pair(index: int, pair: LayerPair, shadow: dict[str, np.ndarray] | None, flatten_shapes: FlattenShapes,
               rtol: float, atol: float) -> LayerComparison:
    """One row of the table for ``pair`` (``shadow``: b's outputs when fed a's inputs, None in propagate mode)."""
    out_a = pair.a.output
    row = LayerComparison(index, pair.a_name, pair.b_name, _kind(pair),
                          list(out_a.shape[1:]) if out_a is not None else [], pair.how, pair.weights,
                          "not shadowed", note=pair.note)
    out_b = pair.b.output if shadow is None else shadow.get(pair.b.name)
    propagated = False
    if shadow is not None and out_b is None and _inputs_agree(pair, flatten_shapes, rtol, atol):
        out_b, propagated = pair.b.output, True
    if out_a is None:
        return row
    if out_b is None:  # shadow mode, not fed: judge the propagated output, but say it was not isolated
        if pair.b.output is not None and _measure(row, out_a, pair.b.output, pair.b.layout, pair.a.layout,
                                                  flatten_shapes, rtol, atol):
            row.status = "not shadowed" if row.within_metrics else "diverged, not shadowed"
        row.note = _joined(row.note, "b's layer could not be fed a's input; the propagated output is shown")
        row.explanations = [explanation_dict(e) for e in explain_pair(pair, diverged=not row.within_metrics)]
        return row
    if not _measure(row, out_a, out_b, pair.b.layout, pair.a.layout, flatten_shapes, rtol, atol):
        row.status = "shape mismatch"
        row.note = _joined(row.note, f"b's shape {list(out_b.shape)}")
    else:
        row.status = "match" if row.within_metrics else "diverged"
    if propagated:
        row.note = _joined(row.note, "inputs already agree: the propagated output is the shadowed one")
    if row.within and row.weights == _BUG_LABEL:
        row.weights = "same (flatten order as in a)"  # a's flatten order is b's too: nothing to permute
    row.explanations = [explanation_dict(e) for e in explain_pair(pair, diverged=not row.within)]
    return row


def judge_output(index: int, ca: Capture, cb: Capture, flatten_shapes: FlattenShapes, rtol: float,
                 atol: float) -> LayerComparison:
    """The row of the models' final outputs (always propagated, in both modes)."""
    row = LayerComparison(index, "<output>", "<output>", "output", list(ca.output.shape[1:]), "output", "n/a",
                          "shape mismatch")
    if _measure(row, ca.output.astype(np.float32), cb.output.astype(np.float32), cb.layout, ca.layout,
                flatten_shapes, rtol, atol):
        row.status = "match" if row.within_metrics else "diverged"
    return row


def _joined(note: str, extra: Any) -> str:
    return f"{note}; {extra}" if note else str(extra)
