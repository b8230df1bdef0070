"""The accuracy-vs-size curve: one factorisation, many parameter budgets, each evaluated."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from dldebug.arguments import real, received
from dldebug.compress.calibration import CalibData
from dldebug.compress.compress_layers import apply_ranks, check_options, plan_layers, score
from dldebug.compress.ranks import ranks_by_param_ratio
from dldebug.compress.result import count_params, skip_finding
from dldebug.compress.selection import SkippedLayer, select_layers
from dldebug.compress.spectrum import LayerSpectrum
from dldebug.compress.svd import SvdMethod
from dldebug.errors import ConfigError, InputError
from dldebug.findings import Figure, Finding, Report, Series, Severity, Table

__all__ = ["SizeAccuracyCurve", "SizePoint", "accuracy_vs_size"]

DEFAULT_RATIOS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75)


@dataclass(frozen=True)
class SizePoint:
    """One compressed model on the curve (``param_ratio`` 1.0 is the original)."""

    param_ratio: float
    model_params: int
    accuracy: float
    ranks: dict[str, int]


@dataclass(frozen=True)
class SizeAccuracyCurve:
    """Accuracy against model size, from the original down to the smallest budget.

    Attributes:
        original: the uncompressed model's point.
        points: compressed points, largest budget first.
        max_accuracy_drop: the tolerance of :meth:`smallest_within` and the figure.
        skipped: linear layers kept dense in every point (tied weights, unsupported types).
    """

    original: SizePoint
    points: tuple[SizePoint, ...]
    max_accuracy_drop: float
    skipped: tuple[SkippedLayer, ...] = ()

    def smallest_within(self, max_drop: float | None = None) -> SizePoint:
        """The smallest model whose accuracy is within ``max_drop`` of the original (the original if none)."""
        limit = self.max_accuracy_drop if max_drop is None else max_drop
        fitting = [p for p in self.points if self.original.accuracy - p.accuracy <= limit]
        return min(fitting, key=lambda p: p.model_params, default=self.original)

    @property
    def table(self) -> Table:
        rows = tuple((p.param_ratio, p.model_params, round(p.model_params / self.original.model_params, 4),
                 round(p.accuracy, 4), round(self.original.accuracy - p.accuracy, 4),
                 ", ".join(f"{k}:{v or 'dense'}" for k, v in p.ranks.items()) or "original")
                     for p in (self.original, *self.points))
        return Table("compress.accuracy_vs_size",
                     ("param_ratio", "model params", "size vs original", "accuracy", "drop", "ranks"), rows,
                     caption="param_ratio = the budget for the compressed layers' parameters.")

    @property
    def figure(self) -> Figure:
        ordered = sorted((self.original, *self.points), key=lambda p: p.model_params)
        base = self.original.accuracy
        xs = [p.model_params for p in ordered]
        return Figure(
            "compress.accuracy_vs_size", title="Accuracy vs model parameters (truncated SVD)",
            series=(Series("compressed", xs, [p.accuracy for p in ordered], style="line"),
                    Series(f"original - {self.max_accuracy_drop * 100:g} point(s)", [xs[0], xs[-1]],
                           [base - self.max_accuracy_drop] * 2)),
            markers=((float(self.smallest_within().model_params), "smallest within tolerance"),),
            xlabel="model parameters", ylabel="accuracy", logx=True,
            caption="Each point compresses the original with a global parameter budget (greedy by error "
                    "per parameter); no fine-tuning.")

    @property
    def report(self) -> Report:
        best = self.smallest_within()
        drop = self.original.accuracy - best.accuracy
        finding = Finding(
            "compress.size_tradeoff", Severity.INFO,
            f"Smallest model within {self.max_accuracy_drop * 100:g} point(s): {best.model_params:,} of "
            f"{self.original.model_params:,} parameters ({best.model_params / self.original.model_params:.1%}), "
            f"accuracy {best.accuracy:.4f} vs {self.original.accuracy:.4f}.",
            {"model_params": best.model_params, "original_params": self.original.model_params,
             "param_ratio": best.param_ratio, "accuracy": best.accuracy,
             "original_accuracy": self.original.accuracy, "drop": drop},
            fix=f"compress_linear_layers(model, param_ratio={best.param_ratio:g}, ...)", lesson=7)
        skips = [skip_finding(skip) for skip in self.skipped]
        return Report([finding, *skips], title="Accuracy vs size", tables=(self.table,), figures=(self.figure,))


def accuracy_vs_size(
    model: nn.Module,
    eval_fn: Callable[[nn.Module], float],
    *,
    param_ratios: Sequence[float] = DEFAULT_RATIOS,
    layers: Sequence[str] | None = None,
    calib_data: CalibData | None = None,
    data_aware: bool | None = None,
    method: SvdMethod = "auto",
    max_accuracy_drop: float = 0.01,
) -> SizeAccuracyCurve:
    """Evaluate the model compressed at each parameter budget (factorising each layer only once).

    Args:
        model: the model (never modified).
        eval_fn: ``model -> accuracy`` (or any higher-is-better score).
        param_ratios: budgets in (0, 1) for the compressed layers' parameters.
        layers, calib_data, data_aware, method: as in :func:`compress_linear_layers`.
        max_accuracy_drop: the tolerance ``smallest_within`` and the figure use (0.01 = 1 point).

    Returns:
        A :class:`SizeAccuracyCurve` with ``.table``, ``.figure`` and ``.report``.

    Raises:
        ConfigError: ``param_ratios`` not a non-empty list of numbers in (0, 1); a bad ``data_aware``,
            ``method`` or ``max_accuracy_drop`` (as in :func:`compress_linear_layers`).
        InputError: ``eval_fn`` not callable or not returning one finite number; bad ``layers``,
            ``calib_data`` or ``model``.
    """
    ratios = _ratios(param_ratios)
    use_data, max_drop = check_options(model, calib_data=calib_data, data_aware=data_aware, method=method,
                                       eval_fn=eval_fn, max_accuracy_drop=max_accuracy_drop, eval_required=True)
    work = copy.deepcopy(model)
    chosen, skipped = select_layers(work, layers)
    spectra = plan_layers(work, chosen, calib_data=calib_data, data_aware=use_data, method=method)
    original = SizePoint(1.0, count_params(model), score(eval_fn, model), {})
    points = []
    for ratio in ratios:
        ranks, _ = ranks_by_param_ratio(spectra, ratio)
        clone, cloned_spectra = _clone(work, spectra)
        compressed = apply_ranks(clone, cloned_spectra, ranks)
        points.append(SizePoint(ratio, count_params(compressed), score(eval_fn, compressed), ranks))
    return SizeAccuracyCurve(original, tuple(points), max_drop, tuple(skipped))


def _ratios(param_ratios: object) -> list[float]:
    """The budgets, largest first; anything but a non-empty list of numbers in (0, 1) is one ConfigError."""
    requirement = "param_ratios must be a non-empty list of values in (0, 1)"
    if isinstance(param_ratios, (np.ndarray, torch.Tensor)) and param_ratios.ndim == 1:
        param_ratios = param_ratios.tolist()
    if isinstance(param_ratios, (str, bytes, np.ndarray, torch.Tensor)) or not isinstance(param_ratios, Iterable):
        raise ConfigError(f"{requirement}; got {received(param_ratios)}.")
    values = list(param_ratios)
    if not values:
        raise ConfigError(f"{requirement}; got [].")
    for index, value in enumerate(values):
        try:
            real(value, "", low=0.0, high=1.0)
        except InputError:
            raise ConfigError(f"{requirement}; got {received(values)}, whose entry {index} is "
                              f"{received(value)}.") from None
    return sorted({float(r) for r in values}, reverse=True)


def _clone(work: nn.Module, spectra: list[LayerSpectrum]) -> tuple[nn.Module, list[LayerSpectrum]]:
    """A fresh copy of ``work`` and the spectra re-pointed at its modules (factors are shared, not copied)."""
    memo: dict[int, Any] = {}
    clone = copy.deepcopy(work, memo)
    return clone, [dataclasses.replace(s, module=memo[id(s.module)]) for s in spectra]
