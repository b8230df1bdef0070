"""``compare_models``: run two models on the same input, pair their layers, judge each pair."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from dldebug.compare.comparison import Comparison, LayerComparison, explanation_dict
from dldebug.compare.explain import explain_pair
from dldebug.compare.layout import convert_layout, views
from dldebug.compare.matching import LayerPair, match_layers
from dldebug.compare.metrics import layer_metrics
from dldebug.compare.records import Capture
from dldebug.compare.runners import Runner, runner_for
from dldebug.errors import ConfigError, InputError

__all__ = ["compare_models"]

InputKind = Literal["ones", "random"]
Mode = Literal["propagate", "shadow"]
_MODES = ("propagate", "shadow")


def compare_models(a: Any, b: Any, inputs: Any = None, *, input_kind: InputKind | Any = "ones",
                   rtol: float = 1e-4, atol: float = 1e-5, mode: Mode = "propagate",
                   mapping: Mapping[str, str] | None = None, seed: int = 0) -> Comparison:
    """Compare two models layer by layer and find the first layer where they diverge (lesson 10).

    Args:
        a: the reference model: a ``torch.nn.Module``, an ONNX model (``onnx.ModelProto``,
            :class:`dldebug.io.OnnxModel`) or a Keras model (tf_keras or Keras 3).
        b: the model to check, any of the same kinds.
        inputs: a tensor/array in a's layout, a shape tuple, or None (shape from an ONNX/Keras model).
        input_kind: ``"ones"`` (the lesson's all-ones input), ``"random"`` (seeded normal), or a tensor.
        rtol: tolerance relative to each layer's largest |output| of a.
        atol: absolute tolerance.
        mode: ``"propagate"`` runs both models end to end; ``"shadow"`` feeds each layer of b the
            input a's layer received, so the table isolates the layer that introduces an error.
        mapping: explicit pairs ``{a_layer_name: b_layer_name}`` that override matching.
        seed: seed of the ``"random"`` input.

    Returns:
        A :class:`~dldebug.compare.Comparison` (truthy when every paired layer agrees).

    Raises:
        ConfigError: an unknown mode or input kind, or a non-positive tolerance.
        InputError: a model of an unsupported type, or an input that fits neither model.
        LayerNotFoundError: a ``mapping`` name that is not a layer.

    Example:
        >>> import copy, torch
        >>> _ = torch.manual_seed(0)
        >>> a = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LeakyReLU(0.2)).eval()
        >>> b = copy.deepcopy(a)
        >>> b[1].negative_slope = 0.01
        >>> result = compare_models(a, b, (1, 4), input_kind="random")
        >>> bool(result), result.first_divergence.layer_b, result.first_divergence.explanations[0]["rule"]
        (False, '1', 'leaky_relu.slope')
    """
    if mode not in _MODES:
        raise ConfigError(f"mode must be one of {list(_MODES)}; got {mode!r}.")
    if not (rtol >= 0 and atol >= 0) or rtol + atol == 0:
        raise ConfigError(f"rtol and atol must be >= 0 and not both 0; got rtol={rtol!r}, atol={atol!r}.")
    runner_a, runner_b = runner_for(a), runner_for(b)
    x_a = _make_input(inputs, input_kind, runner_a, runner_b, seed)
    x_a = _input_for(runner_a, x_a, runner_a.layout)
    x_b = _input_for(runner_b, x_a, runner_a.layout)
    capture_a, capture_b = _capture(runner_a, x_a, "a"), _capture(runner_b, x_b, "b")
    matching = match_layers(capture_a, capture_b, mapping)
    flatten_shapes = [(r.flatten_from, r.layout) for r in capture_a.records + capture_b.records if r.flatten_from]
    outputs_b = _shadow_outputs(runner_b, x_b, matching.pairs, flatten_shapes) if mode == "shadow" else None
    rows = [_judge(i, pair, outputs_b, flatten_shapes, rtol, atol) for i, pair in enumerate(matching.pairs)]
    if mode == "propagate" and capture_a.output.size:
        rows.append(_judge_output(len(rows), capture_a, capture_b, flatten_shapes, rtol, atol))
    settings = {"framework_a": capture_a.framework, "framework_b": capture_b.framework, "mode": mode,
                "rtol": rtol, "atol": atol, "input_shape": list(x_a.shape),
                "input_kind": input_kind if isinstance(input_kind, str) and inputs is None else "given",
                "layers_a": len(capture_a.records), "layers_b": len(capture_b.records)}
    return Comparison(rows, [r.describe() for r in matching.unmatched_a],
                      [r.describe() for r in matching.unmatched_b], settings)


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def _make_input(inputs: Any, input_kind: Any, ra: Runner, rb: Runner, seed: int) -> np.ndarray:
    kind_is_tensor = not isinstance(input_kind, str)
    if not kind_is_tensor and input_kind not in ("ones", "random"):
        raise ConfigError(f"input_kind must be 'ones', 'random' or a tensor; got {input_kind!r}.")
    if kind_is_tensor and inputs is not None:
        raise ConfigError("give the input tensor once: either inputs=... or input_kind=<tensor>, not both.")
    given = input_kind if kind_is_tensor else inputs
    if given is not None and not (isinstance(given, Sequence) and all(isinstance(d, int) for d in given)):
        return _to_numpy(given)
    shape = tuple(given) if given is not None else _model_shape(ra, rb)
    if kind_is_tensor or input_kind == "ones":
        return np.ones(shape, np.float32)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _model_shape(ra: Runner, rb: Runner) -> tuple[int, ...]:
    for runner in (ra, rb):
        shape = runner.input_shape()
        if shape is not None and all(d is not None for d in shape[1:]):
            full = tuple(1 if d is None else int(d) for d in shape)
            return tuple(convert_layout(np.empty(full, np.float32), runner.layout, ra.layout).shape)
    raise InputError("cannot tell the input shape: neither model declares one (PyTorch modules do not). "
                     "Pass inputs=(1, 3, 32, 32) (a shape in model a's layout) or a tensor.")


def _fits(shape: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    return len(shape) == len(expected) and all(e is None or e == s for e, s in zip(expected[1:], shape[1:],
                                                                                  strict=True))


def _input_for(runner: Runner, x: np.ndarray, source_layout: Any) -> np.ndarray:
    """``x`` (in a's layout) for this runner: images change layout; a sequence (rank 3) only when it must."""
    converted = convert_layout(x, source_layout, runner.layout)
    expected = runner.input_shape()
    if x.ndim == 3 and (expected is None or _fits(x.shape, expected)):
        converted = x
    if expected is not None and not _fits(converted.shape, expected):
        raise InputError(f"the input has shape {list(x.shape)} in model a's layout ({source_layout}); model "
                         f"{runner.framework} expects {list(expected)} in {runner.layout}. Give inputs in model "
                         "a's layout with the size the models expect.")
    return np.ascontiguousarray(converted)


def _capture(runner: Runner, x: np.ndarray, side: str) -> Capture:
    try:
        return runner.capture(x)
    except Exception as exc:  # a model failing on the input: say which one, with what
        raise InputError(f"model {side} ({runner.framework}) failed on an input of shape {list(x.shape)}: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}") from None


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape[:1] + tuple(d for d in shape[1:] if d != 1)


def _best_view(x: np.ndarray, source: Any, target: Any, like: np.ndarray,
               flatten_shapes: list[Any]) -> tuple[str, np.ndarray] | None:
    """The view of ``x`` closest to ``like``; singleton axes may differ ((N, C, 1, 1) vs (N, C))."""
    candidates = [(n, v) for n, v in views(x, source, target, flatten_shapes) if v.shape == like.shape]
    if not candidates:
        candidates = [(f"{n}, squeezed", v.reshape(like.shape)) for n, v in views(x, source, target, flatten_shapes)
                      if v.ndim and _squeezed(v.shape) == _squeezed(like.shape)]
    if not candidates:
        return None
    return min(candidates, key=lambda nv: float(np.nanmax(np.abs(nv[1] - like))) if like.size else 0.0)


def _shadow_outputs(runner: Runner, x_b: np.ndarray, pairs: list[LayerPair],
                    flatten_shapes: list[Any]) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    for pair in pairs:
        a_in, b_in = pair.a_feed.input, pair.b_feed.input
        if a_in is None or b_in is None:
            continue
        view = _best_view(a_in, pair.a.layout, pair.b.layout, b_in, flatten_shapes)
        if view is not None:
            feeds[pair.b_feed.name] = view[1]
    try:
        return runner.run_layers(x_b, feeds)
    except Exception as exc:
        raise InputError(f"shadow mode could not run model b's layers on a's inputs: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:300] if str(exc) else ''}") from None


def _judge(index: int, pair: LayerPair, shadow: dict[str, np.ndarray] | None, flatten_shapes: list[Any],
           rtol: float, atol: float) -> LayerComparison:
    out_a = pair.a.output
    out_b = pair.b.output if shadow is None else shadow.get(pair.b.name)
    row = LayerComparison(index, pair.a_name, pair.b_name, pair.a.kind if pair.a.kind == pair.b.kind else
                          f"{pair.a.kind}/{pair.b.kind}", list(out_a.shape[1:]) if out_a is not None else [],
                          pair.how, pair.weights, "no shadow input", note=pair.note)
    if out_a is None or out_b is None:
        return row
    view = _best_view(out_b, pair.b.layout, pair.a.layout, out_a, flatten_shapes)
    if view is None:
        row.status = "shape mismatch"
        row.note = (row.note + "; " if row.note else "") + f"b's shape {list(out_b.shape)}"
    else:
        metrics = layer_metrics(out_a, view[1], rtol=rtol, atol=atol)
        row.metrics, row.view = metrics.to_dict(), view[0]
        row.status = "match" if metrics.within else "diverged"
    row.explanations = [explanation_dict(e) for e in explain_pair(pair, diverged=not row.within)]
    return row


def _judge_output(index: int, ca: Capture, cb: Capture, flatten_shapes: list[Any], rtol: float,
                  atol: float) -> LayerComparison:
    row = LayerComparison(index, "<output>", "<output>", "output", list(ca.output.shape[1:]), "output", "n/a",
                          "shape mismatch")
    view = _best_view(cb.output, cb.layout, ca.layout, ca.output, flatten_shapes)
    if view is not None:
        metrics = layer_metrics(ca.output, view[1], rtol=rtol, atol=atol)
        row.metrics, row.view, row.status = metrics.to_dict(), view[0], "match" if metrics.within else "diverged"
    return row
