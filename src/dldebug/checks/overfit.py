"""Can the model over-fit one batch? The first test of any new training set-up (lesson 3).

A network that cannot drive the loss on a single batch near zero will not learn the data set
either: a frozen or dead layer, a bottleneck, a loss that cannot reach zero (a softmax fed to
``CrossEntropyLoss``, which applies its own). The test trains a *copy* the way the user will --
their optimizer's type and hyper-parameters (Adam 1e-3 when none is given) -- until the loss is
near zero or has clearly stalled, up to a cap (:mod:`dldebug.checks.overfit_budget`). The user's
model, optimizer, gradients and the global RNG state are left untouched.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dldebug.checks.layers import set_mode
from dldebug.checks.losses import class_logits
from dldebug.checks.optimizers import describe_optimizer, parameter_mapping, rebuild_optimizer
from dldebug.checks.overfit_budget import Verdict, is_stalled, verdict
from dldebug.errors import InputError
from dldebug.findings import Figure, Finding, Report, Series, Severity
from dldebug.model_io import Batch, LossFn, OutputSpec, model_loss, select_output

__all__ = ["DEFAULT_STEPS", "OverfitResult", "can_overfit"]

DEFAULT_LR = 1e-3  # Adam, when no optimizer is given
DEFAULT_STEPS = 1000  # the cap; healthy set-ups stop far earlier (the loss is near zero)
TARGET_RATIO = 0.05  # passed: the loss falls to this share of the initial loss ...
ABSOLUTE_FLOOR = 1e-4  # ... or below this (a batch that starts near zero)
INIT_LOSS_FACTOR = 1.5  # cross-entropy at initialisation above this multiple of ln(C) is suspicious
STALL_CHECK_EVERY = 10  # steps between two early-stop tests
_TOOL = "can_overfit"


@dataclass(frozen=True)
class OverfitResult:
    """What :func:`can_overfit` measured; truthy when the model over-fits the batch.

    Attributes:
        passed: the loss fell to ``target_ratio`` of the initial loss (or below 1e-4).
        initial_loss: the loss on the batch before training (eval mode).
        final_loss: the loss on the batch after training (eval mode).
        history: the training loss at every step (train mode), as plain floats.
        steps: the steps run (the run stops at the target, at a stall, at NaN/Inf, or at the cap).
        lr: the learning rate of the first parameter group.
        report: findings (``capacity.cannot_overfit``, ``capacity.overfit_unfinished``,
            ``capacity.init_loss``) and the loss curve.
        verdict: ``"passed"``, ``"stalled"``, ``"crawling"``, ``"unfinished"``, ``"diverged"`` or ``"frozen"``.
        optimizer: the optimizer used, e.g. ``"SGD (lr 0.05, momentum 0.9)"``.
        cap: the step budget.
    """

    passed: bool
    initial_loss: float
    final_loss: float
    history: list[float] = field(default_factory=list, repr=False)
    steps: int = 0
    lr: float = DEFAULT_LR
    report: Report = field(default_factory=Report, repr=False)
    verdict: str = "passed"
    optimizer: str = "Adam"
    cap: int = DEFAULT_STEPS

    def __bool__(self) -> bool:
        return self.passed

    @property
    def findings(self) -> tuple[Finding, ...]:
        return self.report.findings


@dataclass
class _Run:
    """The copy being trained and what the run measured."""

    model: nn.Module
    loss_fn: LossFn | None
    optimizer: torch.optim.Optimizer
    batch: Batch
    output: OutputSpec
    history: list[float] = field(default_factory=list)


def can_overfit(
    model: nn.Module,
    batch: Any,
    loss_fn: LossFn | None = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    steps: int = DEFAULT_STEPS,
    lr: float | None = None,
    target_ratio: float = TARGET_RATIO,
    seed: int = 0,
    output: OutputSpec = None,
) -> OverfitResult:
    """Train a copy of ``model`` on one batch with the user's optimizer; report whether the loss falls near zero.

    Args:
        model: the PyTorch module to test; it is deep-copied, never modified.
        batch: ``(inputs, targets)``, ``(*inputs, targets)``, or a dict of keyword arguments
            (targets under ``"labels"``), as :class:`dldebug.model_io.Batch` reads it.
        loss_fn: e.g. ``nn.CrossEntropyLoss()``, called as ``loss_fn(output, targets)``; None: the
            model computes its own loss (``outputs.loss``, from the batch's ``labels``).
        optimizer: the user's optimizer: its type and per-group hyper-parameters are rebuilt on the
            copy (its state is not copied). None: Adam with ``lr`` (default 1e-3).
        steps: the cap; the run stops earlier at the target, at a clear stall, or at NaN/Inf.
        lr: overrides the learning rate (of every group of ``optimizer``).
        target_ratio: pass when the loss falls to this share of the initial loss.
        seed: seeds dropout and other randomness inside the test (the global RNG is restored).
        output: which tensor of a structured output ``loss_fn`` reads (see ``dldebug.model_io``).

    Returns:
        An :class:`OverfitResult` (truthy when passed) whose ``report`` holds the error
        ``capacity.cannot_overfit`` when the loss stalled (or crawls, diverged, or nothing can be
        trained), the info ``capacity.overfit_unfinished`` when it was still falling at the cap, and
        ``capacity.init_loss`` when a cross-entropy starts far above ln(C).

    Raises:
        InputError: a malformed batch, a non-scalar loss, no loss to read, or bad settings.

    Example:
        >>> torch.manual_seed(0) and None
        >>> net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
        >>> x, y = torch.randn(8, 4), torch.arange(8) % 3
        >>> sgd = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        >>> result = can_overfit(net, (x, y), nn.CrossEntropyLoss(), optimizer=sgd)
        >>> result.passed, result.final_loss < 0.05 * result.initial_loss, result.optimizer
        (True, True, 'SGD (lr 0.1, momentum 0.9)')
    """
    _validate(steps, lr, target_ratio, optimizer)
    parsed = Batch.from_user(batch, loss_fn=loss_fn, tool=_TOOL)
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        run = _prepare(model, parsed, loss_fn, optimizer, lr, output)
        initial, logits, own = _eval_loss(run)
        target = max(target_ratio * initial, ABSOLUTE_FLOOR) if initial > 0 else ABSOLUTE_FLOOR
        if _trainable(run.optimizer):
            _train(run, steps, initial, target)
        final = _eval_loss(run)[0] if run.history and math.isfinite(run.history[-1]) else math.nan
    judged = verdict(run.history, initial=initial, target=target, cap=steps)
    if judged.kind != "passed" and math.isfinite(final) and final <= target:
        judged = Verdict("passed", judged.progress, 0.0)  # eval mode (no dropout) is already there
    return _result(run, judged, initial, final, target, target_ratio, steps, logits, own)


def _validate(steps: int, lr: float | None, target_ratio: float, optimizer: Any) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps <= 0:
        raise InputError(f"steps must be a positive integer (the step budget); got {steps!r}.")
    if (lr is not None and not lr > 0) or not 0 < target_ratio < 1:
        raise InputError(f"lr must be > 0 and target_ratio in (0, 1); got lr={lr!r}, target_ratio={target_ratio!r}.")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise InputError(f"optimizer must be a torch.optim.Optimizer (the one you train with) or None; "
                         f"got {type(optimizer).__name__}.")


def _prepare(model: nn.Module, batch: Batch, loss_fn: LossFn | None, optimizer: torch.optim.Optimizer | None,
             lr: float | None, output: OutputSpec) -> _Run:
    trainee = copy.deepcopy(model)
    trainee.zero_grad(set_to_none=True)  # a deep copy carries the user's stale gradients
    mapping = parameter_mapping(model, trainee)
    loss_copy = loss_fn
    if isinstance(loss_fn, nn.Module) and any(True for _ in loss_fn.parameters()):
        loss_copy = copy.deepcopy(loss_fn)  # a loss with learnable parameters (the user may train them)
        mapping.update(parameter_mapping(loss_fn, loss_copy))
    if optimizer is not None:
        work = rebuild_optimizer(optimizer, mapping, lr=lr)
    else:
        trainable = [p for p in trainee.parameters() if p.requires_grad]
        work = torch.optim.Adam(trainable or [nn.Parameter(torch.zeros(()))], lr=DEFAULT_LR if lr is None else lr)
        if not trainable:
            work.param_groups[0]["params"] = []
    return _Run(trainee, loss_copy, work, batch, output)


def _trainable(optimizer: torch.optim.Optimizer) -> bool:
    return any(p.requires_grad for group in optimizer.param_groups for p in group["params"])


def _eval_loss(run: _Run) -> tuple[float, Any, float | None]:
    """The eval-mode loss, the tensor the loss reads (or None) and the model's own loss (loss_fn=None)."""
    set_mode(run.model, training=False)
    with torch.no_grad():
        loss, raw = model_loss(run.model, run.batch, run.loss_fn, output=run.output, tool=_TOOL)
    try:
        logits: Any = select_output(raw, run.output, tool=_TOOL)
    except InputError:
        logits = None
    return float(loss), logits, float(loss) if run.loss_fn is None else None


def _train(run: _Run, cap: int, initial: float, target: float) -> None:
    set_mode(run.model, training=True)
    optimizer, history = run.optimizer, run.history

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss, _ = model_loss(run.model, run.batch, run.loss_fn, output=run.output, tool=_TOOL)
        loss.backward()
        return loss

    for _ in range(cap):
        optimizer.zero_grad(set_to_none=True)
        loss, _ = model_loss(run.model, run.batch, run.loss_fn, output=run.output, tool=_TOOL)
        history.append(float(loss.detach()))
        if not math.isfinite(history[-1]) or history[-1] <= target:
            break
        if isinstance(optimizer, torch.optim.LBFGS):  # re-evaluates the loss itself
            optimizer.step(closure)
        else:
            loss.backward()
            optimizer.step()
        if len(history) % STALL_CHECK_EVERY == 0 and is_stalled(history, initial):
            break


def _result(run: _Run, judged: Verdict, initial: float, final: float, target: float, target_ratio: float,
            cap: int, logits: Any, own: float | None) -> OverfitResult:
    optimizer = describe_optimizer(run.optimizer)
    evidence = _evidence(run, judged, initial, final, target, target_ratio, cap, optimizer)
    findings = []
    if judged.is_error:
        findings.append(_cannot_overfit(judged, evidence))
    elif judged.kind == "unfinished":
        findings.append(_unfinished(evidence))
    init = _init_loss_finding(run.loss_fn, logits, run.batch.targets, initial, own)
    if init is not None:
        findings.append(init)
    history = run.history
    figure = Figure("overfit.loss", title="Over-fitting one batch: training loss per step",
                    series=(Series("training loss", range(len(history)), history),),
                    xlabel="step", ylabel="loss", logy=all(h > 0 for h in history if math.isfinite(h)),
                    caption=f"{optimizer}, {len(history)} of at most {cap} steps on one batch; initial "
                            f"{initial:.4g}, final {final:.4g}, target {target:.4g} ({judged.kind}).")
    passed = judged.kind == "passed"
    report = Report(findings, title="Over-fit one batch", figures=(figure,),
                    meta={"passed": passed, "initial_loss": initial, "final_loss": final, "lr": evidence["lr"],
                          "verdict": judged.kind, "optimizer": optimizer, "steps": len(history), "cap": cap})
    return OverfitResult(passed, initial, final, list(history), len(history), evidence["lr"], report,
                         judged.kind, optimizer, cap)


def _evidence(run: _Run, judged: Verdict, initial: float, final: float, target: float, target_ratio: float,
              cap: int, optimizer: str) -> dict[str, Any]:
    groups = run.optimizer.param_groups
    lr = float(groups[0]["lr"]) if groups and "lr" in groups[0] else math.nan
    finite = [h for h in run.history if math.isfinite(h)]
    trend = judged.progress
    return {"verdict": judged.kind, "initial_loss": initial, "final_loss": final,
            "final_train_loss": run.history[-1] if run.history else None, "min_loss": min(finite, default=None),
            "target_loss": target, "target_ratio": target_ratio, "steps": len(run.history), "cap": cap,
            "optimizer": optimizer, "lr": lr, "window": trend.window if trend else None,
            "recent_drop": trend.drop if trend else None,
            "projected_steps": judged.projected_steps if judged.projected_steps is not None
            and math.isfinite(judged.projected_steps) else None}


def _cannot_overfit(judged: Verdict, ev: dict[str, Any]) -> Finding:
    start, last, steps, opt = ev["initial_loss"], ev["final_train_loss"], ev["steps"], ev["optimizer"]
    trend = judged.progress
    if judged.kind == "frozen":
        what = "no parameter can be trained (none of the optimizer's parameters has requires_grad=True)"
    elif judged.kind == "diverged":
        what = f"the loss turned non-finite at step {steps - 1}"
    elif judged.kind == "stalled" and trend is not None:
        what = (f"the loss stalled at {trend.recent:.4g} (from {start:.4g}; target {ev['target_loss']:.4g}): it fell "
                f"{max(trend.drop, 0.0):.1%} over the last {trend.window} of {steps} steps")
    else:
        more = f"{ev['projected_steps']:,.0f}" if ev["projected_steps"] is not None else "many"
        what = (f"in {steps} steps the loss crawled from {start:.4g} to {last:.4g}; at its recent rate reaching "
                f"{ev['target_loss']:.4g} would take about {more} more steps")
    fix = ("Lower the learning rate, or clip gradients." if judged.kind == "diverged" else
           "Unfreeze the layers to train and build the optimizer from them." if judged.kind == "frozen" else
           "Check the loss gets raw logits (no softmax before CrossEntropyLoss), that no layer is frozen, detached "
           "or a bottleneck (a width-1 layer before the head), and that the learning rate is not far too low; "
           "then try a smaller network: a huge FC layer after the convolutions is the usual culprit "
           "(dldebug.parameter_audit).")
    return Finding("capacity.cannot_overfit", Severity.ERROR,
                   f"The model cannot over-fit a single batch with {opt}: {what}.", ev, fix=fix, lesson=3)


def _unfinished(ev: dict[str, Any]) -> Finding:
    more = f"; at its recent rate about {ev['projected_steps']:,.0f} more steps" if ev["projected_steps"] else ""
    return Finding(
        "capacity.overfit_unfinished", Severity.INFO,
        f"The loss was still falling when the budget of {ev['cap']} {ev['optimizer']} steps ran out: "
        f"{ev['initial_loss']:.4g} -> {ev['final_train_loss']:.4g} (target {ev['target_loss']:.4g}){more}.",
        ev, fix=f"Not a failure: run the test with a larger budget (steps={max(2 * ev['cap'], 200)}) to decide.",
        lesson=3)


def _init_loss_finding(loss_fn: Callable[..., torch.Tensor] | None, logits: Any, target: Any,
                       initial: float, own: float | None) -> Finding | None:
    view = class_logits(loss_fn, logits, target, own)
    if view is None or view.kind != "cross_entropy" or view.classes < 2:
        return None
    expected = math.log(view.classes)
    if not initial > INIT_LOSS_FACTOR * expected:
        return None
    return Finding(
        "capacity.init_loss", Severity.WARNING,
        f"The cross-entropy at initialisation is {initial:.3g}, far above ln({view.classes}) = {expected:.3g}, "
        "the loss of a model that starts out unsure.",
        {"initial_loss": initial, "expected_loss": expected, "num_classes": view.classes,
         "ratio": initial / expected},
        fix="The untrained model is confidently wrong: scale down the last layer's initial weights (or its "
            "logits), check the input normalisation, and that the targets are class indices 0..C-1.",
        lesson=3)
