"""Can the model over-fit one batch? The first test of any new training set-up (lesson 3).

A network that cannot drive the loss on a single batch near zero will not learn the data set
either: too many parameters for its optimiser settings, a frozen or dead layer, or a loss that
cannot reach zero (a softmax fed to ``CrossEntropyLoss``, which applies its own). The test trains
a *copy*; the user's model, its gradients and the global RNG state are left untouched.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dldebug.checks.layers import set_mode
from dldebug.errors import InputError
from dldebug.findings import Figure, Finding, Report, Series, Severity

__all__ = ["OverfitResult", "can_overfit"]

DEFAULT_LR = 1e-3  # Adam
TARGET_RATIO = 0.05  # passed: the final loss is at most this share of the initial loss
ABSOLUTE_FLOOR = 1e-4  # ... or below this (a batch that starts near zero)
INIT_LOSS_FACTOR = 1.5  # cross-entropy at initialisation above this multiple of ln(C) is suspicious


@dataclass(frozen=True)
class OverfitResult:
    """What :func:`can_overfit` measured; truthy when the model over-fits the batch.

    Attributes:
        passed: the final loss fell to ``target_ratio`` of the initial loss (or below 1e-4).
        initial_loss: the loss on the batch before training (eval mode).
        final_loss: the loss on the batch after training (eval mode).
        history: the training loss at every step (train mode), as plain floats.
        steps: the steps run (fewer than asked when the loss turned NaN/Inf).
        lr: the Adam learning rate used.
        report: findings (``capacity.cannot_overfit``, ``capacity.init_loss``) and the loss curve.
    """

    passed: bool
    initial_loss: float
    final_loss: float
    history: list[float] = field(default_factory=list, repr=False)
    steps: int = 0
    lr: float = DEFAULT_LR
    report: Report = field(default_factory=Report, repr=False)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def findings(self) -> tuple[Finding, ...]:
        return self.report.findings


def can_overfit(
    model: nn.Module,
    batch: Sequence[Any],
    loss_fn: Callable[..., torch.Tensor],
    *,
    steps: int = 200,
    lr: float | None = None,
    target_ratio: float = TARGET_RATIO,
    seed: int = 0,
) -> OverfitResult:
    """Train a copy of ``model`` on one batch with Adam and report whether the loss falls near zero.

    Args:
        model: the PyTorch module to test; it is deep-copied, never modified.
        batch: ``(inputs, targets)``; with more items, all but the last are passed to the model
            positionally: ``loss_fn(model(*batch[:-1]), batch[-1])``.
        loss_fn: e.g. ``nn.CrossEntropyLoss()``; called as ``loss_fn(output, targets)``.
        steps: optimiser steps.
        lr: Adam's learning rate (default 1e-3).
        target_ratio: pass when the final loss is at most this share of the initial loss.
        seed: seeds dropout and other randomness inside the test (the global RNG is restored).

    Returns:
        An :class:`OverfitResult` (truthy when passed) whose ``report`` holds
        ``capacity.cannot_overfit`` when the loss does not fall, and ``capacity.init_loss`` when a
        cross-entropy starts far above ln(C).

    Raises:
        InputError: a malformed batch, a non-scalar loss, no trainable parameter, or bad settings.

    Example:
        >>> torch.manual_seed(0) and None
        >>> net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
        >>> x, y = torch.randn(8, 4), torch.arange(8) % 3
        >>> result = can_overfit(net, (x, y), nn.CrossEntropyLoss(), steps=150, lr=1e-2)
        >>> result.passed, result.final_loss < 0.05 * result.initial_loss
        (True, True)
    """
    inputs, target = _split_batch(batch)
    if not isinstance(steps, int) or steps <= 0:
        raise InputError(f"steps must be a positive integer; got {steps!r}.")
    lr = DEFAULT_LR if lr is None else lr
    if not lr > 0 or not 0 < target_ratio < 1:
        raise InputError(f"lr must be > 0 and target_ratio in (0, 1); got lr={lr!r}, target_ratio={target_ratio!r}.")
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        trainee = copy.deepcopy(model)
        params = [p for p in trainee.parameters() if p.requires_grad]
        if not params:
            raise InputError("can_overfit found no trainable parameter (all have requires_grad=False); "
                             "unfreeze at least the layers you want to train.")
        initial, output = _eval_loss(trainee, inputs, target, loss_fn)
        history = _train(trainee, params, inputs, target, loss_fn, steps, lr)
        final = _eval_loss(trainee, inputs, target, loss_fn)[0] if math.isfinite(history[-1]) else math.nan
    return _result(initial, final, history, output, target, loss_fn, steps, lr, target_ratio)


def _result(initial: float, final: float, history: list[float], output: Any, target: Any,
            loss_fn: Callable[..., torch.Tensor], steps: int, lr: float, target_ratio: float) -> OverfitResult:
    passed = math.isfinite(final) and (final <= target_ratio * initial or final <= ABSOLUTE_FLOOR)
    findings = []
    if not passed:
        findings.append(_cannot_overfit(initial, final, history, steps, lr, target_ratio))
    init = _init_loss_finding(loss_fn, output, target, initial)
    if init is not None:
        findings.append(init)
    figure = Figure("overfit.loss", title="Over-fitting one batch: training loss per step",
                    series=(Series("training loss", range(len(history)), history),),
                    xlabel="step", ylabel="loss", logy=all(h > 0 for h in history if math.isfinite(h)),
                    caption=f"Adam, lr {lr:g}, {len(history)} steps on one batch; initial {initial:.4g}, "
                            f"final {final:.4g}.")
    report = Report(findings, title="Over-fit one batch", figures=(figure,),
                    meta={"passed": passed, "initial_loss": initial, "final_loss": final, "lr": lr})
    return OverfitResult(passed, initial, final, history, len(history), lr, report)


def _split_batch(batch: Any) -> tuple[tuple[Any, ...], Any]:
    if isinstance(batch, (str, bytes)) or not isinstance(batch, Sequence) or len(batch) < 2:
        got = f"{type(batch).__name__} of length {len(batch)}" if isinstance(batch, Sequence) else type(batch).__name__
        raise InputError(f"batch must be (inputs, targets), e.g. (x, y); got {got}.")
    return tuple(batch[:-1]), batch[-1]


def _loss(model: nn.Module, inputs: tuple[Any, ...], target: Any,
          loss_fn: Callable[..., torch.Tensor]) -> tuple[torch.Tensor, Any]:
    output = model(*inputs)
    loss = loss_fn(output, target)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise InputError(f"loss_fn must return a scalar tensor; got {shape}. Use reduction='mean'.")
    return loss.reshape(()), output


def _eval_loss(model: nn.Module, inputs: tuple[Any, ...], target: Any,
               loss_fn: Callable[..., torch.Tensor]) -> tuple[float, Any]:
    set_mode(model, training=False)
    with torch.no_grad():
        loss, output = _loss(model, inputs, target, loss_fn)
    return float(loss), output


def _train(model: nn.Module, params: list[nn.Parameter], inputs: tuple[Any, ...], target: Any,
           loss_fn: Callable[..., torch.Tensor], steps: int, lr: float) -> list[float]:
    set_mode(model, training=True)
    model.zero_grad(set_to_none=True)  # a deep copy carries the user's stale gradients
    optimizer = torch.optim.Adam(params, lr=lr)
    history: list[float] = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss, _ = _loss(model, inputs, target, loss_fn)
        history.append(float(loss.detach()))
        if not math.isfinite(history[-1]):
            break
        loss.backward()
        optimizer.step()
    return history


def _cannot_overfit(initial: float, final: float, history: list[float], steps: int, lr: float,
                    target_ratio: float) -> Finding:
    diverged = not math.isfinite(final)
    what = (f"the loss turned non-finite at step {len(history) - 1}" if diverged
            else f"the loss fell from {initial:.4g} to {final:.4g} ({final / initial:.0%} of its start)"
            if initial > 0 else f"the loss went from {initial:.4g} to {final:.4g}")
    return Finding(
        "capacity.cannot_overfit", Severity.ERROR,
        f"The model cannot over-fit a single batch in {steps} Adam steps: {what}.",
        {"initial_loss": initial, "final_loss": final, "steps": len(history), "lr": lr,
         "target_ratio": target_ratio, "min_loss": min((h for h in history if math.isfinite(h)), default=math.nan)},
        fix="Lower the learning rate (if it diverged); check the loss gets raw logits (no softmax before "
            "CrossEntropyLoss), no layer is frozen or detached, and try a smaller network: a huge FC layer "
            "after the convolutions is the usual culprit (dldebug.parameter_audit).",
        lesson=3)


def _init_loss_finding(loss_fn: Callable[..., torch.Tensor], output: Any, target: Any,
                       initial: float) -> Finding | None:
    is_ce = isinstance(loss_fn, nn.CrossEntropyLoss) or loss_fn is F.cross_entropy
    if not is_ce or not isinstance(output, torch.Tensor) or output.dim() < 2 or output.shape[1] < 2:
        return None
    classes = int(output.shape[1])
    expected = math.log(classes)
    if not initial > INIT_LOSS_FACTOR * expected:
        return None
    return Finding(
        "capacity.init_loss", Severity.WARNING,
        f"The cross-entropy at initialisation is {initial:.3g}, far above ln({classes}) = {expected:.3g}, "
        "the loss of a model that starts out unsure.",
        {"initial_loss": initial, "expected_loss": expected, "num_classes": classes,
         "ratio": initial / expected},
        fix="The untrained model is confidently wrong: scale down the last layer's initial weights (or its "
            "logits), check the input normalisation, and that the targets are class indices 0..C-1.",
        lesson=3)
