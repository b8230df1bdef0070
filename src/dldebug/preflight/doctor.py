"""``preflight``: run every pre-flight check on copies of a training set-up, into one Report."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from dldebug.findings import CheckResult, CheckStatus, Finding, Report, Severity
from dldebug.preflight.checks import CHECKS, CheckOutcome, bad_targets
from dldebug.preflight.dynamics import batch_mixing, cannot_overfit, grad_accumulation
from dldebug.preflight.setup import TrainingSetup, TrainStep


def preflight(
    model: nn.Module,
    batch: Sequence[torch.Tensor],
    loss_fn: Callable[..., torch.Tensor],
    optimizer: torch.optim.Optimizer,
    *,
    train_step: TrainStep | None = None,
    overfit_steps: int = 100,
    checks: Sequence[str] | None = None,
) -> Report:
    """Check a training set-up before a long run; the user's model and optimizer are not modified.

    Args:
        model: the model as it will be trained.
        batch: one ``(inputs, targets)`` batch from the training loader.
        loss_fn: the training loss, ``loss_fn(model(inputs), targets)``.
        optimizer: the optimizer as it will be used.
        train_step: optional ``(model, batch, loss_fn, optimizer) -> loss``, one step of your own loop;
            needed for ``preflight.grad_accumulation``.
        overfit_steps: steps of the over-fit-one-batch test (0 skips it).
        checks: run only these check ids (default: all).

    Returns:
        A Report: findings with ids ``preflight.*`` and a status per check in ``report.checks``.

    Raises:
        InputError: arguments of the wrong type or an empty batch.
    """
    setup = TrainingSetup.from_args(model, batch, loss_fn, optimizer, train_step)
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
    statuses = []
    for name, check in suite:
        try:
            found, skipped = check(setup)
        except Exception as exc:  # a check must not hide the others; say what broke
            statuses.append(CheckResult(name, "skipped", f"could not run: {type(exc).__name__}: {exc}"[:300]))
            continue
        findings.extend(found)
        status: CheckStatus = "failed" if any(f.severity >= Severity.WARNING for f in found) else (
            "skipped" if skipped else "passed")
        statuses.append(CheckResult(name, status, skipped or "; ".join(f.message for f in found)))
    return Report(findings, title="Pre-flight check", checks=statuses,
                  meta={"batch_size": setup.batch_size, "optimizer": type(optimizer).__name__})


def _forward_errors(setup: TrainingSetup) -> list[Finding]:
    """Findings when the forward pass or the loss raises; bad targets are named as such."""
    work = setup.copy()
    stage = "forward pass"
    try:
        with torch.no_grad():
            out: Any = work.model(setup.inputs)
            stage = "loss"
            work.loss_fn(out, setup.targets)
    except Exception as exc:
        if stage == "loss":
            explained, _ = bad_targets(setup)
            if explained:
                return explained
        return [Finding("preflight.forward_failed", Severity.ERROR, f"the {stage} raised {type(exc).__name__}",
                        {"error": str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__,
                         "stage": stage, "input_shape": list(setup.inputs.shape),
                         "target_shape": list(setup.targets.shape),
                         "target_dtype": str(setup.targets.dtype)},
                        fix="Fix the shapes/dtypes named in the error; the other checks need a working forward pass.")]
    return []
