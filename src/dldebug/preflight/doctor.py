"""``preflight``: run every pre-flight check on copies of a training set-up, into one Report."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from dldebug.checks.losses import ClassLogits
from dldebug.checks.overfit import DEFAULT_STEPS
from dldebug.errors import DldebugError, InputError
from dldebug.findings import CheckResult, CheckStatus, Finding, Report, Severity
from dldebug.model_io import TARGET_KEYS, LossFn, OutputSpec, describe, read_loss, select_output
from dldebug.preflight.checks import CHECKS, CheckOutcome, bad_targets, targets_finding
from dldebug.preflight.dynamics import batch_mixing, cannot_overfit, grad_accumulation
from dldebug.preflight.setup import TrainingSetup, TrainStep

_TOOL = "preflight"


def preflight(
    model: nn.Module,
    batch: Any,
    loss_fn: LossFn | None,
    optimizer: torch.optim.Optimizer,
    *,
    train_step: TrainStep | None = None,
    overfit_steps: int = DEFAULT_STEPS,
    checks: Sequence[str] | None = None,
    output: OutputSpec = None,
) -> Report:
    """Check a training set-up before a long run; the user's model and optimizer are not modified.

    Args:
        model: the model as it will be trained.
        batch: one batch from the training loader: ``(inputs, targets)``, ``(*inputs, targets)``, or
            a dict of keyword arguments (a Hugging Face batch; targets under ``"labels"``).
        loss_fn: the training loss, ``loss_fn(output, targets)``; None when the model computes its
            own loss from the batch's ``labels`` (``outputs.loss``).
        optimizer: the optimizer as it will be used (the over-fit test trains a copy with its type
            and hyper-parameters).
        train_step: optional ``(model, batch, loss_fn, optimizer) -> loss``, one step of your own loop;
            needed for ``preflight.grad_accumulation``.
        overfit_steps: the step budget (cap) of the over-fit-one-batch test (0 skips it); it stops
            earlier when the loss is near zero or clearly stalled.
        checks: run only these check ids (default: all).
        output: which tensor of a structured output the loss reads (a key/attribute, an index or a
            callable); default ``logits``, else ``last_hidden_state``, else the first tensor.

    Returns:
        A Report: findings with ids ``preflight.*`` and a status per check in ``report.checks``.

    Raises:
        InputError: arguments of the wrong type, an empty batch, or ``loss_fn=None`` with a model
            that returns no loss.
    """
    if not isinstance(overfit_steps, int) or overfit_steps < 0:
        raise InputError(f"overfit_steps must be a whole number >= 0 (0 skips the test); got {overfit_steps!r}.")
    setup = TrainingSetup.from_args(model, batch, loss_fn, optimizer, train_step, output)
    suite: list[tuple[str, Callable[[TrainingSetup], CheckOutcome]]] = [
        *CHECKS,
        ("preflight.grad_accumulation", grad_accumulation),
        ("preflight.batch_mixing", batch_mixing),
    ]
    if overfit_steps > 0:
        suite.append(("preflight.cannot_overfit", functools.partial(cannot_overfit, steps=overfit_steps)))
    if checks is not None:
        suite = [(name, fn) for name, fn in suite if name in set(checks)]
    broken = _forward_errors(setup)
    if broken:
        return Report(broken, title="Pre-flight check",
                      checks=[CheckResult(name, "skipped", "the forward pass or the loss failed") for name, _ in suite])
    findings: list[Finding] = []
    statuses = [_run(name, check, setup, findings) for name, check in suite]
    return Report(findings, title="Pre-flight check", checks=statuses,
                  meta={"batch_size": setup.batch_size, "optimizer": type(optimizer).__name__,
                        "loss": type(loss_fn).__name__ if loss_fn is not None else "the model's own (outputs.loss)"})


def _run(name: str, check: Callable[[TrainingSetup], CheckOutcome], setup: TrainingSetup,
         findings: list[Finding]) -> CheckResult:
    try:
        found, skipped = check(setup)
    except Exception as exc:  # a check must not hide the others; say what broke
        return CheckResult(name, "skipped", f"could not run: {type(exc).__name__}: {exc}"[:300])
    findings.extend(found)
    status: CheckStatus = "failed" if any(f.severity >= Severity.WARNING for f in found) else (
        "skipped" if skipped else "passed")
    return CheckResult(name, status, skipped or "; ".join(f.message for f in found))


def _forward_errors(setup: TrainingSetup) -> list[Finding]:
    """Findings when the forward pass or the loss raises; bad targets are named as such.

    A usage error (``loss_fn=None`` and no loss in the output, an ``output=`` that names nothing)
    is raised as the InputError it is.
    """
    work = setup.copy()
    stage, raw = "forward pass", None
    try:
        with torch.no_grad():
            raw = setup.batch.call(work.model)
            stage = "loss"
            if work.loss_fn is None:
                read_loss(raw, tool=_TOOL)
            else:
                work.loss_fn(select_output(raw, setup.output, tool=_TOOL), setup.targets)
    except DldebugError:
        raise
    except Exception as exc:
        explained = _explain_targets(setup, stage)
        if explained:
            return explained
        inside = " (the model computes its loss from the batch's 'labels')" if _own_loss_with_labels(setup) else ""
        return [Finding("preflight.forward_failed", Severity.ERROR, f"the {stage} raised {type(exc).__name__}{inside}",
                        {"error": str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__,
                         "stage": stage, "inputs": describe(setup.inputs), "targets": describe(setup.targets),
                         "output": describe(raw) if raw is not None else None},
                        fix="Fix the shapes/dtypes named in the error (the inputs and targets are described in the "
                            "evidence); the other checks need a working forward pass and loss.")]
    return []


def _own_loss_with_labels(setup: TrainingSetup) -> bool:
    return setup.loss_fn is None and isinstance(setup.inputs, dict) and any(k in setup.inputs for k in TARGET_KEYS)


def _explain_targets(setup: TrainingSetup, stage: str) -> list[Finding]:
    """``preflight.bad_targets`` when the failure comes from targets that do not fit the logits."""
    if stage == "loss" and setup.loss_fn is not None:
        try:
            return bad_targets(setup)[0]
        except Exception:  # the logits themselves cannot be read: not a target problem
            return []
    if not _own_loss_with_labels(setup):
        return []
    inputs = {k: v for k, v in setup.inputs.items() if k not in TARGET_KEYS}
    try:  # the model computes its loss inside forward(): call it without the labels to read the logits
        with torch.no_grad():
            logits = select_output(setup.copy().model(**inputs), setup.output, tool=_TOOL)
    except Exception:
        return []
    if logits.dim() < 2:
        return []
    flat = logits.reshape(-1, logits.shape[-1]) if logits.dim() > 2 else logits
    targets = setup.targets.reshape(-1) if isinstance(setup.targets, torch.Tensor) else setup.targets
    return targets_finding(ClassLogits("cross_entropy", flat, targets))
