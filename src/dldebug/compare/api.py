"""``compare_models``: run two models on the same input, pair their layers, judge each pair."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from dldebug.compare.comparison import Comparison
from dldebug.compare.coverage import measure_coverage, unpaired_between
from dldebug.compare.inputs import ModelInputs, bind_inputs, make_inputs, source_layouts
from dldebug.compare.judge import judge_output, judge_pair
from dldebug.compare.layout import best_view
from dldebug.compare.matching import LayerPair, match_layers
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
        inputs: one tensor/array, a tuple of them (positional inputs), a dict name -> tensor (ONNX input
            names / ``forward`` keyword arguments, e.g. ``{"input_ids", "attention_mask"}``), a shape tuple,
            or None (shapes from an ONNX/Keras model). Dtypes are kept (int64 token ids stay int64). An
            image input is moved to each model's own layout when the shapes make that unambiguous.
        input_kind: ``"ones"`` (the lesson's all-ones input), ``"random"`` (seeded normal), or a tensor.
        rtol: tolerance relative to each layer's largest |output| of a.
        atol: absolute tolerance.
        mode: ``"propagate"`` runs both models end to end; ``"shadow"`` feeds each layer of b the
            input a's layer received, so the table isolates the layer that introduces an error; a layer
            that cannot be fed is judged on its propagated output and never passes silently.
        mapping: explicit pairs ``{a_layer_name: b_layer_name}`` that override matching.
        seed: seed of the ``"random"`` input.

    Returns:
        A :class:`~dldebug.compare.Comparison` (truthy when every paired layer agrees).

    Raises:
        ConfigError: an unknown mode or input kind; a tolerance that is not a finite number >= 0 (or both 0);
            a ``mapping`` that is not a dict of names; a seed that is not an integer >= 0.
        InputError: a model of an unsupported type; an input that fits neither model, is empty, holds
            NaN/Inf, or is not numeric.
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
    rtol, atol = _check_options(mode, rtol, atol, mapping, seed)
    runner_a, runner_b = runner_for(a), runner_for(b)
    specs = [runner_a.input_specs(), runner_b.input_specs()]
    given = make_inputs(inputs, input_kind, specs, seed)
    given.check_values()
    sources = source_layouts(given, specs, runner_a.layout)
    bound_a = bind_inputs(given, specs[0], runner_a.layout, sources, "a", runner_a.framework)
    bound_b = bind_inputs(given, specs[1], runner_b.layout, sources, "b", runner_b.framework)
    capture_a, capture_b = _capture(runner_a, bound_a.inputs, "a"), _capture(runner_b, bound_b.inputs, "b")
    matching = match_layers(capture_a, capture_b, mapping)
    flatten_shapes = [(r.flatten_from, r.layout) for r in capture_a.records + capture_b.records if r.flatten_from]
    shadow = _shadow_outputs(runner_b, bound_b.inputs, matching.pairs, flatten_shapes) if mode == "shadow" else None
    rows = [judge_pair(i, pair, shadow, flatten_shapes, rtol, atol) for i, pair in enumerate(matching.pairs)]
    if capture_a.output.size:
        rows.append(judge_output(len(rows), capture_a, capture_b, flatten_shapes, rtol, atol))
    for row, gap in zip(rows, unpaired_between(capture_a, capture_b, matching.pairs), strict=False):
        row.unpaired_before = gap
    coverage = measure_coverage(capture_a, capture_b, matching)
    settings = {"framework_a": capture_a.framework, "framework_b": capture_b.framework, "mode": mode,
                "rtol": rtol, "atol": atol, "input_shape": list(given.arrays[0].shape), "inputs": given.describe(),
                "converted_inputs": list(given.converted),
                "input_kind": input_kind if isinstance(input_kind, str) and inputs is None else "given",
                "layouts": {"a": runner_a.layout, "b": runner_b.layout},
                "transposed": {"a": bound_a.transposed, "b": bound_b.transposed},
                "layers_a": len(capture_a.records), "layers_b": len(capture_b.records),
                "coverage": coverage.summary}
    return Comparison(rows, [r.describe() for r in matching.unmatched_a],
                      [r.describe() for r in matching.unmatched_b], settings, coverage.unpaired_a,
                      coverage.unpaired_b)


def _tolerance(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0; got {value!r} ({type(value).__name__}). "
                          f"Pass e.g. {name}=1e-4.")
    return float(value)


def _check_options(mode: Any, rtol: Any, atol: Any, mapping: Any, seed: Any) -> tuple[float, float]:
    """Refuse option values of the wrong type or range before anything runs; the tolerances as floats."""
    if not isinstance(mode, str) or mode not in _MODES:
        raise ConfigError(f"mode must be one of {list(_MODES)}; got {mode!r}.")
    rtol, atol = _tolerance("rtol", rtol), _tolerance("atol", atol)
    if rtol + atol == 0:
        raise ConfigError(f"rtol and atol must not both be 0 (nothing would be within tolerance); got rtol={rtol!r}, "
                          f"atol={atol!r}.")
    if mapping is not None and (not isinstance(mapping, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())):
        raise ConfigError(f"mapping must be a dict {{a_layer_name: b_layer_name}} of strings; got {mapping!r:.200}.")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0; got {seed!r} ({type(seed).__name__}).")
    return rtol, atol


def _capture(runner: Runner, x: ModelInputs, side: str) -> Capture:
    try:
        return runner.capture(x)
    except Exception as exc:  # a model failing on the input: say which one, with what
        shapes = ", ".join(f"{list(a.shape)} {a.dtype}" for a in x.arrays)
        raise InputError(f"model {side} ({runner.framework}) failed on inputs {shapes}: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}") from None


def _feed(pair: LayerPair, flatten_shapes: list[Any]) -> list[np.ndarray]:
    """a's inputs of the pair, each in the view b's layer takes (its own propagated input's shape)."""
    a_inputs = pair.a_feed.inputs or ([pair.a_feed.input] if pair.a_feed.input is not None else [])
    b_inputs = pair.b_feed.inputs or ([pair.b_feed.input] if pair.b_feed.input is not None else [])
    fed = []
    for a_in, b_in in zip(a_inputs, b_inputs, strict=False):
        view = best_view(a_in, pair.a_feed.layout, pair.b_feed.layout, b_in, flatten_shapes, reshape=True)
        if view is None:
            break
        fed.append(view[1])
    return fed


def _shadow_outputs(runner: Runner, x: ModelInputs, pairs: list[LayerPair],
                    flatten_shapes: list[Any]) -> dict[str, np.ndarray]:
    feeds: dict[str, list[np.ndarray]] = {}
    spans: dict[str, str] = {}
    for pair in pairs:
        fed = _feed(pair, flatten_shapes)
        if fed:
            feeds[pair.b_feed.name] = fed
            if pair.b is not pair.b_feed:
                spans[pair.b_feed.name] = pair.b.name
    wanted = {spans.get(name, name) for name in feeds}
    try:  # torch runners return every layer; only the fed ones are isolated
        return {k: v for k, v in runner.run_layers(x, feeds, spans).items() if k in wanted}
    except Exception as exc:
        raise InputError(f"shadow mode could not run model b's layers on a's inputs: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:300] if str(exc) else ''}") from None
