"""``compress_linear_layers``: truncated-SVD compression of a model's linear layers (lesson 7)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from numbers import Real
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from dldebug.arguments import flag, integer, real, received
from dldebug.compress.calibration import CalibData, collect_layer_inputs
from dldebug.compress.lowrank import check_finite_weights, factorized_module, layer_shape, max_useful_rank
from dldebug.compress.ranks import (
    KEEP_DENSE,
    ranks_by_energy,
    ranks_by_max_error,
    ranks_by_param_ratio,
    ranks_fixed,
)
from dldebug.compress.result import CompressionResult, build_result, count_params
from dldebug.compress.selection import find_layers, select_layers
from dldebug.compress.spectrum import LayerSpectrum, analyse_layer
from dldebug.compress.svd import SvdMethod, check_method
from dldebug.errors import ConfigError, InputError

__all__ = ["apply_ranks", "check_options", "compress_linear_layers", "find_layers", "plan_layers", "replace_layer",
           "score", "select_layers"]

Mode = Literal["rank", "energy", "max_error", "param_ratio"]
_MODES: tuple[Mode, ...] = ("rank", "energy", "max_error", "param_ratio")


def _check_mode(rank: int | None, energy: float | None, max_error: float | None, param_ratio: float | None,
                has_calib: bool) -> tuple[Mode, float]:
    given = {name: value for name, value in zip(_MODES, (rank, energy, max_error, param_ratio), strict=True)
             if value is not None}
    if len(given) != 1:
        got = ", ".join(f"{k}={v!r}" for k, v in given.items()) or "none"
        raise ConfigError(f"Give exactly one of rank, energy, max_error, param_ratio to choose the ranks; "
                          f"got {got}. Example: compress_linear_layers(model, energy=0.95).")
    mode, value = next(iter(given.items()))
    if mode == "rank":
        return mode, float(integer(value, "rank must be a positive int", error=ConfigError))
    requirement, high, high_closed = {
        "energy": ("energy is the fraction of spectral energy to keep, in (0, 1]", 1.0, True),
        "max_error": ("max_error is a relative output error budget per layer, a finite number > 0 (e.g. 0.05)",
                      math.inf, False),
        "param_ratio": ("param_ratio is the fraction of the layers' parameters to keep, in (0, 1)", 1.0, False),
    }[mode]
    number = real(value, requirement, low=0.0, high=high, high_closed=high_closed, error=ConfigError)
    if mode == "max_error" and not has_calib:
        raise ConfigError("max_error is measured on the layers' outputs, so it needs calib_data (a batch of "
                          "typical inputs). Pass calib_data=..., or choose the ranks with energy=... instead.")
    return mode, number


def check_options(model: object, *, calib_data: object, data_aware: object, method: object, eval_fn: object,
                  max_accuracy_drop: object, eval_required: bool = False) -> tuple[bool, float]:
    """Validate the options shared by the compression entry points.

    Returns:
        (whether to factorise data-aware, max_accuracy_drop as a float).

    Raises:
        InputError: ``model`` is not an ``nn.Module``, ``eval_fn`` is not callable.
        ConfigError: ``data_aware`` is not a bool (or None), or True without calib_data; an unknown
            ``method``; ``max_accuracy_drop`` not a finite number >= 0.
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch nn.Module; got {received(model)}.")
    if (eval_fn is None and eval_required) or (eval_fn is not None and not callable(eval_fn)):
        raise InputError(f"eval_fn must be a function model -> accuracy (higher is better); got "
                         f"{received(eval_fn)}.")
    aware = flag(data_aware, "data_aware", allow_none=True, error=ConfigError)
    if aware and calib_data is None:
        raise ConfigError("data_aware=True minimises the output error on calibration inputs; pass "
                          "calib_data=... (a batch of typical inputs) or set data_aware=False.")
    check_method(method)
    drop = real(max_accuracy_drop, "max_accuracy_drop must be a finite number >= 0 (0.01 = 1 point)", low=0.0,
                low_closed=True, error=ConfigError)
    return (calib_data is not None if aware is None else aware), drop


def score(eval_fn: Callable[[nn.Module], Any], model: nn.Module) -> float:
    """``eval_fn(model)`` as a float; a result that is not one finite number is one InputError."""
    value = eval_fn(model)
    if isinstance(value, (torch.Tensor, np.ndarray)) and math.prod(value.shape) == 1:
        value = value.reshape(()).tolist()
    if isinstance(value, Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(float(value)):
        return float(value)
    raise InputError(f"eval_fn must return one finite number (an accuracy, higher is better); it returned "
                     f"{received(value)}.")


def plan_layers(model: nn.Module, layers: dict[str, nn.Module], *, calib_data: CalibData | None,
                data_aware: bool, method: SvdMethod, rank: int | None = None) -> list[LayerSpectrum]:
    """Factorise every layer once, up to the largest rank any rule may pick.

    With a fixed ``rank`` only that many triplets are computed; layers where no
    rank saves parameters (or the fixed rank is past break-even) are not factorised.
    """
    inputs = collect_layer_inputs(model, layers, calib_data) if calib_data is not None and layers else {}
    spectra = []
    for name, module in layers.items():
        check_finite_weights(name, module)
        m, n = layer_shape(module)
        limit = max_useful_rank(m, n)
        k = limit if rank is None else min(rank, limit)
        if k < 1 or (rank is not None and rank > limit):
            continue
        spectra.append(analyse_layer(name, module, k, inputs=inputs.get(name), data_aware=data_aware,
                                     method=method))
    return spectra


def replace_layer(root: nn.Module, old: nn.Module, new: nn.Module) -> int:
    """Put ``new`` wherever ``old`` is a child in ``root`` (every place a shared layer appears).

    Returns:
        How many places were replaced.
    """
    count = 0
    for parent in list(root.modules()):
        # parent._modules, not named_children(): that lists a module registered twice only once
        for child_name, child in list(parent._modules.items()):
            if child is old:
                setattr(parent, child_name, new)
                count += 1
    return count


def _choose_ranks(spectra: list[LayerSpectrum], mode: Mode, value: float) -> tuple[dict[str, int], bool]:
    if mode == "rank":
        return ranks_fixed(spectra, int(value)), True
    if mode == "energy":
        return ranks_by_energy(spectra, value), True
    if mode == "max_error":
        return ranks_by_max_error(spectra, value), True
    return ranks_by_param_ratio(spectra, value)


def apply_ranks(model: nn.Module, spectra: list[LayerSpectrum], ranks: dict[str, int]) -> nn.Module:
    """Replace each layer with a rank > 0 in ``model`` (mutated) by its two factors; returns the model."""
    for spectrum in spectra:
        rank = ranks.get(spectrum.name, KEEP_DENSE)
        if rank == KEEP_DENSE:
            continue
        new = factorized_module(spectrum.module, *spectrum.factors(rank))
        if spectrum.module is model:
            model = new
        else:
            replace_layer(model, spectrum.module, new)
    return model


def compress_linear_layers(
    model: nn.Module,
    *,
    rank: int | None = None,
    energy: float | None = None,
    max_error: float | None = None,
    param_ratio: float | None = None,
    layers: Sequence[str] | None = None,
    calib_data: CalibData | None = None,
    inplace: bool = False,
    data_aware: bool | None = None,
    method: SvdMethod = "auto",
    eval_fn: Callable[[nn.Module], float] | None = None,
    max_accuracy_drop: float = 0.01,
) -> CompressionResult:
    """Replace linear layers by truncated-SVD factor pairs, choosing each layer's rank.

    Exactly one rule picks the ranks: a fixed ``rank``; the smallest rank keeping
    ``energy`` of the spectral energy; the smallest rank whose relative output
    error on ``calib_data`` is at most ``max_error``; or a global ``param_ratio``
    budget shared greedily by error per parameter. A layer is never replaced
    where the rank would be at or past break-even (``t >= m*n/(m+n)``).

    Args:
        model: the model; left untouched unless ``inplace=True``.
        rank, energy, max_error, param_ratio: the rank rule (exactly one).
        layers: names of the layers to consider (default: all ``nn.Linear``, transformers ``Conv1D`` and
            1x1 ``nn.Conv2d``).
        calib_data: typical inputs: one batch (a tensor, a tuple of positional input tensors, a dict of
            keyword inputs such as a tokenizer's output) or an iterable of batches (tensors,
            ``(inputs, labels)`` pairs or dicts; a DataLoader); enables output errors and, by default,
            the data-aware factorisation.
        inplace: modify ``model`` itself (a model that *is* one linear layer is returned, not modified).
        data_aware: minimise the output error on ``calib_data`` (default: True when it is given).
        method: SVD algorithm for plain factorisation: ``"auto"``, ``"exact"``, ``"gram"``, ``"randomized"``.
        eval_fn: optional ``model -> accuracy``; compares the original and compressed models.
        max_accuracy_drop: accuracy drop above which ``compress.accuracy_drop`` warns (0.01 = 1 point).

    Returns:
        A :class:`CompressionResult` (``.model``, ``.table``, ``.report``, totals).

    Raises:
        ConfigError: not exactly one rule, a value of the wrong type or out of range (bools are not
            numbers, NaN/inf never pass), ``max_error`` without calib_data, a flag that is not a bool,
            an unknown ``method``.
        LayerNotFoundError, InputError: bad ``layers``, ``calib_data``, ``model`` or ``eval_fn`` (not
            callable, or returning something other than a finite number), or NaN/inf weights.

    Example:
        >>> net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        >>> result = compress_linear_layers(net, rank=8)
        >>> [row["rank"] for row in result.table.records()]
        [8, 8]
        >>> result.params_after < result.params_before
        True
    """
    mode, value = _check_mode(rank, energy, max_error, param_ratio, calib_data is not None)
    use_data, max_drop = check_options(model, calib_data=calib_data, data_aware=data_aware, method=method,
                                       eval_fn=eval_fn, max_accuracy_drop=max_accuracy_drop)
    accuracy_before = score(eval_fn, model) if eval_fn is not None else None
    target = model if flag(inplace, "inplace", error=ConfigError) else copy.deepcopy(model)
    chosen, skipped = select_layers(target, layers)
    spectra = plan_layers(target, chosen, calib_data=calib_data, data_aware=use_data, method=method,
                          rank=int(value) if mode == "rank" else None)
    ranks, budget_met = _choose_ranks(spectra, mode, value)
    model_params_before = count_params(model)
    compressed = apply_ranks(target, spectra, ranks)
    accuracy_after = score(eval_fn, compressed) if eval_fn is not None else None
    with torch.no_grad():
        return build_result(compressed, layers=chosen, skipped=skipped, spectra=spectra, ranks=ranks, mode=mode,
                            value=value, budget_met=budget_met, model_params_before=model_params_before,
                            accuracy=(accuracy_before, accuracy_after), max_accuracy_drop=max_drop)
