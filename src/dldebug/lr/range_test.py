"""A learning-rate range test that is not fooled by noise, spikes or NaN (lesson 11).

The model is trained for a few steps while the learning rate grows
exponentially; the loss-vs-lr curve is smoothed with a running median (so a
single spike cannot move it), the run stops at divergence (a non-finite loss or
a smoothed loss far above its best), and the suggestion is drawn from the
stable descending region only. The spread of the suggestion over several
smoothing windows is reported as its uncertainty. The model (parameters, buffers,
gradients, train/eval flags), the optimizer and the RNG states are restored exactly
afterwards.

Batches go through :mod:`dldebug.model_io`: ``(inputs, targets)`` pairs, or dicts of keyword
arguments (Hugging Face style, targets under ``"labels"``); with ``loss_fn=None`` the model
computes its own loss (``outputs.loss``), else ``loss_fn(select_output(outputs, output), targets)``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from dldebug.arguments import integer, real, received
from dldebug.errors import DldebugError, InputError
from dldebug.findings import Figure, Finding, Report, Series, Severity, Span
from dldebug.model_io import Batch, LossFn, OutputSpec, describe, model_loss, parameters_device

_TOOL = "lr_range_test"

_DIVERGE_FACTOR = 4.0  # stop once the smoothed loss exceeds 4x its best (after a descent)
_WINDOWS = (0.03, 0.05, 0.08)  # smoothing windows as fractions of the run, for the uncertainty


@dataclass(frozen=True)
class LRRangeResult:
    """The curve and suggestion of :func:`lr_range_test`.

    Attributes:
        lrs, losses: the learning rate and raw loss of each step run (NaN/inf kept).
        smoothed: the running-median-smoothed loss (NaN after a non-finite loss).
        suggestion: the suggested learning rate, or None when the loss never fell.
        low, high: the range of suggestions over several smoothing windows.
        stopped_at: the learning rate at which the run stopped early (divergence), or None.
        report: findings and the loss-vs-lr figure.
    """

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    suggestion: float | None
    low: float | None
    high: float | None
    stopped_at: float | None
    report: Report


def _check_loader(loader: Any) -> None:
    """Refuse one batch given where an iterable of batches is expected (iterating it would split it)."""
    one_batch = (isinstance(loader, (torch.Tensor, np.ndarray, Mapping))
                 or (isinstance(loader, tuple) and loader and all(isinstance(t, torch.Tensor) for t in loader)))
    if one_batch or isinstance(loader, (str, bytes)) or not isinstance(loader, Iterable):
        raise InputError(f"{_TOOL}: loader must be an iterable of batches (a DataLoader, a list of (inputs, "
                         f"targets) pairs or of dicts); got {describe(loader)}. For one batch, pass [batch].")


MAX_STEPS = 100_000  # a range test runs a few hundred steps (fastai: 100); this many is a typo


def _check_arguments(model: Any, loss_fn: Any, optimizer: Any, start: Any, end: Any,
                     steps: Any) -> tuple[float, float, int]:
    """(start, end, steps) as numbers, after checking every argument's type and range."""
    if not isinstance(model, nn.Module):
        raise InputError(f"{_TOOL}: model must be a torch nn.Module; got {received(model)}.")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise InputError(f"{_TOOL}: optimizer must be a torch optimizer over the model's parameters "
                         f"(torch.optim.SGD(model.parameters(), lr=...)); got {received(optimizer)}.")
    if loss_fn is not None and not callable(loss_fn):
        raise InputError(f"{_TOOL}: loss_fn must be a function (output, targets) -> scalar loss, or None for the "
                         f"model's own loss; got {received(loss_fn)}.")
    try:
        low, high = real(start, "", low=0.0), real(end, "", low=0.0)
    except InputError:
        low = high = math.nan
    if not low < high:
        raise InputError(f"Expected 0 < start < end; got start={received(start)}, end={received(end)}.")
    count = integer(steps, "steps must be an integer >= 10", low=10)
    if count > MAX_STEPS:
        raise InputError(f"steps={count:,} is more than a range test needs (at most {MAX_STEPS:,}; a few hundred "
                         "is typical): each step is a training step.")
    return low, high, count


def _batches(loader: Iterable[Any], loss_fn: LossFn | None) -> Iterator[Batch]:
    while True:
        produced = False
        for batch in loader:
            produced = True
            yield Batch.from_user(batch, loss_fn=loss_fn, tool=_TOOL)
        if not produced:
            raise InputError(f"{_TOOL}: the loader produced no batch; give an iterable of (inputs, targets) "
                             "batches or of dicts of keyword arguments.")


def running_median(values: np.ndarray, window: int) -> np.ndarray:
    """Centred running median (shrinking at the ends); NaN where values are NaN."""
    half = max(1, window // 2)
    padded = np.pad(values, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    return np.median(windows, axis=1)


def _suggest(lrs: np.ndarray, losses: np.ndarray, window: int) -> float | None:
    smooth = running_median(losses, window)
    smooth = np.convolve(np.pad(smooth, window // 2, mode="edge"), np.ones(window) / window, mode="valid")[
        : len(losses)]
    best = int(np.argmin(smooth))
    noise = float(np.median(np.abs(losses - smooth))) * 1.4826 + 1e-12
    if best < 2 or smooth[0] - smooth[best] < 3 * noise / math.sqrt(window):
        return None
    log_lr = np.log10(lrs[: best + 1])
    slope = np.gradient(smooth[: best + 1], log_lr)
    steepest = float(lrs[int(np.argmin(slope))])
    minimum_rule = float(lrs[best]) / 10.0
    # geometric mean of the steepest-descent point and Smith's "minimum / 10" rule
    return math.sqrt(steepest * minimum_rule)


def _restore_point(model: nn.Module, optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    """A function that puts the model, the optimizer and the RNGs back exactly as they are now.

    Parameters and buffers (non-persistent ones too) are copied back in place, so references the
    user holds (an optimizer, a tied weight) stay valid.
    """
    tensors = {id(t): (t, t.detach().clone()) for t in (*model.parameters(), *model.buffers())}
    optim_state = copy.deepcopy(optimizer.state_dict())
    grads = {id(p): None if p.grad is None else p.grad.detach().clone() for p in model.parameters()}
    training = [(m, m.training) for m in model.modules()]
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def restore() -> None:
        with torch.no_grad():
            for tensor, saved in tensors.values():
                tensor.copy_(saved)
        optimizer.load_state_dict(optim_state)
        for p in model.parameters():
            p.grad = grads[id(p)]
        for module, flag in training:
            module.train(flag)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)

    return restore


def _step_loss(model: nn.Module, batch: Batch, loss_fn: LossFn | None, output: OutputSpec,
               first: bool) -> torch.Tensor:
    """The loss of one step; a failure on the first batch becomes one InputError describing it."""
    try:
        return model_loss(model, batch, loss_fn, output=output, tool=_TOOL)[0]
    except DldebugError:
        raise
    except Exception as exc:
        if not first:
            raise
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{_TOOL}: the first training step failed on the batch {describe(batch.inputs)} "
                         f"(targets: {describe(batch.targets)}): {type(exc).__name__}: {detail}. Give batches "
                         "the model takes: (inputs, targets) pairs for loss_fn(output, targets), or dicts of "
                         "keyword arguments with 'labels' (and loss_fn=None for the model's own loss).") from None


def _run(model: nn.Module, loader: Iterable[Any], loss_fn: LossFn | None, optimizer: torch.optim.Optimizer,
         lrs: np.ndarray, output: OutputSpec) -> tuple[list[float], float | None]:
    ratios = [g["lr"] / optimizer.param_groups[0]["lr"] if optimizer.param_groups[0]["lr"] else 1.0
              for g in optimizer.param_groups]
    losses: list[float] = []
    best = math.inf
    model.train()
    device = parameters_device(model)
    batches = _batches(loader, loss_fn)
    for lr in lrs:
        for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
            group["lr"] = float(lr) * ratio
        batch = next(batches).to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = _step_loss(model, batch, loss_fn, output, first=not losses)
        value = float(loss.detach())
        losses.append(value)
        if not math.isfinite(value):
            return losses, float(lr)
        loss.backward()
        optimizer.step()
        recent = float(np.median(losses[-5:]))
        best = min(best, recent)
        start_level = float(np.median(losses[:5]))
        # diverged: far above the best AND most of the descent undone (a tiny best alone is no divergence)
        if len(losses) >= 10 and recent > _DIVERGE_FACTOR * best and recent - best > 0.5 * (start_level - best):
            return losses, float(lr)
    return losses, None


def lr_range_test(
    model: nn.Module,
    loader: Iterable[Any],
    loss_fn: LossFn | None,
    optimizer: torch.optim.Optimizer,
    *,
    start: float = 1e-7,
    end: float = 10,
    steps: int = 100,
    output: OutputSpec = None,
) -> LRRangeResult:
    """Sweep the learning rate exponentially from ``start`` to ``end`` and suggest one.

    Args:
        model: the model to train (restored exactly afterwards: parameters, buffers, gradients,
            train/eval flags).
        loader: an iterable of batches, cycled if shorter than ``steps``: ``(inputs, targets)``
            pairs (``(*inputs, targets)`` for several inputs), or dicts of keyword arguments with the
            targets under ``"labels"`` (a DataLoader over a Hugging Face data set).
        loss_fn: ``loss_fn(output, targets) -> scalar``; None: the model computes its own loss
            (``outputs.loss``, e.g. a Hugging Face model given ``labels``).
        optimizer: an optimizer over ``model``'s parameters (restored afterwards).
        start, end: the learning-rate range, ``0 < start < end``.
        steps: number of training steps (>= 10).
        output: which tensor of a structured model output ``loss_fn`` gets (a key/attribute name, an
            index or a callable; default ``logits``, else the first tensor).

    Returns:
        An :class:`LRRangeResult`; ``.report`` holds ``lr.range_suggestion`` or
        ``lr.range_no_descent`` and the curve.

    Raises:
        InputError: a model, optimizer or loss_fn of the wrong type, a bad range (``0 < start < end``,
            finite numbers) or step count (an int in 10..100,000), a loader that is one batch or empty,
            or a batch the model cannot take (one message naming what was received).
    """
    low, high, count = _check_arguments(model, loss_fn, optimizer, start, end, steps)
    _check_loader(loader)
    lrs = low * (high / low) ** (np.arange(count) / (count - 1))
    restore = _restore_point(model, optimizer)
    try:
        losses, stopped_at = _run(model, loader, loss_fn, optimizer, lrs, output)
    finally:
        restore()
    return _judge(lrs[: len(losses)], np.asarray(losses, dtype=float), stopped_at)


def _judge(lrs: np.ndarray, losses: np.ndarray, stopped_at: float | None) -> LRRangeResult:
    finite = int(np.argmax(~np.isfinite(losses))) if not np.all(np.isfinite(losses)) else len(losses)
    usable_lrs, usable = lrs[:finite], losses[:finite]
    candidates = []
    for fraction in _WINDOWS:
        window = max(3, round(fraction * len(lrs)) | 1)
        if len(usable) > window + 2:
            value = _suggest(usable_lrs, usable, window)
            if value is not None:
                candidates.append(value)
    window = max(3, round(_WINDOWS[1] * len(lrs)) | 1)
    smoothed = np.full(len(losses), np.nan)
    if len(usable):
        smoothed[:finite] = running_median(usable, window)
    findings: list[Finding] = []
    suggestion = low = high = None
    evidence: dict[str, Any] = {"steps_run": len(losses), "lr_first": float(lrs[0]) if len(lrs) else None,
                                "lr_last": float(lrs[-1]) if len(lrs) else None, "stopped_at_lr": stopped_at}
    if candidates:
        suggestion = float(np.exp(np.median(np.log(candidates))))
        low, high = float(min(candidates)), float(max(candidates))
        findings.append(Finding(
            "lr.range_suggestion", Severity.INFO,
            f"suggested learning rate {suggestion:.3g} (range {low:.3g} to {high:.3g} over smoothing windows)",
            {**evidence, "suggestion": suggestion, "low": low, "high": high}, lesson=11,
            fix="Train with the suggested rate; when you change the batch size, rescale it with dldebug.lr.scale_lr "
                "and warm up with dldebug.lr.warmup."))
    else:
        findings.append(Finding(
            "lr.range_no_descent", Severity.WARNING,
            "the loss never fell meaningfully during the range test: no learning rate can be suggested",
            evidence, lesson=11,
            fix="Widen the range (lower start, higher end), use more steps, or check the set-up with dldebug.preflight "
                "(frozen parameters, wrong loss, bad targets)."))
    figure = Figure(
        "lr.range_test", title="Learning-rate range test",
        series=(Series("loss", lrs, losses, "scatter"), Series("running median", lrs, smoothed)),
        spans=() if low is None or high is None else (Span(low, high, "suggestion range"),),
        markers=() if suggestion is None else ((suggestion, f"suggested {suggestion:.2g}"),),
        xlabel="learning rate", ylabel="loss", logx=True,
    )
    report = Report(findings, title="Learning-rate range test", figures=(figure,))
    return LRRangeResult(tuple(map(float, lrs)), tuple(map(float, losses)), tuple(map(float, smoothed)),
                         suggestion, low, high, stopped_at, report)
