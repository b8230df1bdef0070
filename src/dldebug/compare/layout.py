"""Channels-first vs channels-last: the few permutations a port legitimately needs.

A comparison looks at b's tensor in every view a correct port could produce
(as is, channels moved, a flattened NHWC map re-ordered as NCHW) and keeps the
closest one, so a layout difference is never reported as a divergence while a
wrong value still is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dldebug.compare.records import Layout

__all__ = ["best_view", "convert_layout", "flatten_permutation", "views"]


def convert_layout(x: np.ndarray, source: Layout, target: Layout) -> np.ndarray:
    """Move the channel axis of a rank >= 3 batch from ``source`` to ``target`` layout.

    Example:
        >>> convert_layout(np.zeros((1, 4, 5, 3)), "channels_last", "channels_first").shape
        (1, 3, 4, 5)
    """
    if source == target or x.ndim < 3:
        return x
    if source == "channels_last":
        return np.moveaxis(x, -1, 1)
    return np.moveaxis(x, 1, -1)


def flatten_permutation(spatial_shape: Sequence[int], source: Layout) -> np.ndarray:
    """Index array that re-orders a flattened ``source``-layout map into the other layout's order.

    ``spatial_shape`` is the per-sample shape before flattening, in ``source`` layout
    (``(H, W, C)`` for channels_last). ``flat_other = flat_source[:, perm]``.

    Example:
        >>> flatten_permutation((1, 2, 3), "channels_last").tolist()  # HWC -> CHW
        [0, 3, 1, 4, 2, 5]
    """
    shape = tuple(int(s) for s in spatial_shape)
    index = np.arange(int(np.prod(shape))).reshape(shape)
    moved = np.moveaxis(index, -1, 0) if source == "channels_last" else np.moveaxis(index, 0, -1)
    return moved.reshape(-1)


def views(x: np.ndarray, source: Layout, target: Layout,
          flatten_shapes: Sequence[tuple[tuple[int, ...], Layout]] = ()) -> list[tuple[str, np.ndarray]]:
    """Every legitimate view of ``x`` (from ``source`` layout) in ``target`` layout, best guess first.

    Args:
        x: a batch tensor.
        source: the layout ``x`` is in.
        target: the layout wanted.
        flatten_shapes: pre-flatten shapes seen in either model, with their layouts; a rank-2
            ``x`` of matching width also gets its re-ordered views.

    Returns:
        ``(transform name, array)`` pairs; always at least the identity.
    """
    out: list[tuple[str, np.ndarray]] = []
    if x.ndim >= 3 and source != target:
        out.append((f"{source}->{target}", convert_layout(x, source, target)))
    out.append(("identity", x))
    if x.ndim == 2:
        seen: set[tuple[tuple[int, ...], str]] = set()
        for shape, layout in flatten_shapes:
            if len(shape) < 2 or int(np.prod(shape)) != x.shape[1] or (shape, layout) in seen:
                continue
            seen.add((shape, layout))
            perm = flatten_permutation(shape, layout)
            out.append((f"flatten {layout}->other", x[:, perm]))
            out.append((f"flatten other->{layout}", x[:, np.argsort(perm)]))
    return out


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape[:1] + tuple(d for d in shape[1:] if d != 1)


def best_view(x: np.ndarray, source: Layout, target: Layout, like: np.ndarray,
              flatten_shapes: Sequence[tuple[tuple[int, ...], Layout]] = (), *,
              reshape: bool = False) -> tuple[str, np.ndarray] | None:
    """The view of ``x`` closest to ``like`` (same shape); singleton axes may differ ((N, C, 1, 1) vs (N, C)).

    ``reshape=True`` (shadow feeds) also accepts a plain reshape to ``like``'s shape as a last resort:
    an exporter may put a head-merging ``Reshape`` inside the next layer's scope.

    Returns:
        ``(transform name, array)``, or None when no view has ``like``'s shape.

    Example:
        >>> x = np.arange(6.0).reshape(1, 1, 2, 3)
        >>> best_view(x, "channels_first", "channels_last", np.moveaxis(x, 1, -1))[0]
        'channels_first->channels_last'
    """
    all_views = views(x, source, target, flatten_shapes)
    candidates = [(n, v) for n, v in all_views if v.shape == like.shape]
    if not candidates and x.ndim >= 3:
        # a graph that runs part of itself in the other layout (tf2onnx: NHWC ops around NCHW convs, in
        # either export) labels every tensor with one layout; a shape that only fits moved channels is that
        pairs: tuple[tuple[Layout, Layout], ...] = (("channels_first", "channels_last"),
                                                    ("channels_last", "channels_first"))
        moved = [(f"{s}->{t} (in the graph)", convert_layout(x, s, t)) for s, t in pairs]
        candidates = [(n, v) for n, v in moved if v.shape == like.shape]
    if not candidates:
        candidates = [(f"{n}, squeezed", v.reshape(like.shape)) for n, v in all_views
                      if v.ndim and _squeezed(v.shape) == _squeezed(like.shape)]
    if not candidates and reshape and x.size == like.size and x.shape[:1] == like.shape[:1]:
        candidates = [("reshaped", x.reshape(like.shape))]
    if not candidates:
        return None
    if len(candidates) == 1 or not like.size:
        return candidates[0]
    like64 = like.astype(np.float64)
    return min(candidates, key=lambda nv: float(np.nanmax(np.abs(nv[1].astype(np.float64) - like64))))
