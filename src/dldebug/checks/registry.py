"""A registry of model checks and :func:`check_model`, which runs every check that applies.

Modelled on scikit-learn's ``check_estimator``: each check is a plain function with tags and
requirements; the suite yields the ones that apply and records a status per check (passed /
failed / skipped with the reason). ``dldebug.testing.parametrize_checks`` runs the same checks as
separate pytest cases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from dldebug.checks.capacity import parameter_audit
from dldebug.checks.equivariance import probe_equivariance
from dldebug.checks.layers import eval_mode
from dldebug.checks.overfit import can_overfit
from dldebug.checks.transfer import transfer_report
from dldebug.errors import DldebugError, InputError
from dldebug.findings import CheckResult, Finding, Report, Severity

__all__ = ["CHECKS", "CheckContext", "ModelCheck", "check_model", "iter_checks", "register_check", "run_check"]

Task = Literal["dense", "classification"]
Requirement = Literal["example_input", "spatial_input", "target", "loss_fn"]


@dataclass(frozen=True)
class CheckContext:
    """What a check may use; ``task`` is inferred from the output shape when not given."""

    model: nn.Module
    example_input: torch.Tensor | None = None
    target: Any = None
    loss_fn: Callable[..., torch.Tensor] | None = None
    task: Task | None = None
    n_train_samples: int | None = None

    @classmethod
    def create(cls, model: nn.Module, example_input: torch.Tensor | None = None, *, target: Any = None,
               loss_fn: Callable[..., torch.Tensor] | None = None, task: Task | None = None,
               n_train_samples: int | None = None) -> CheckContext:
        """A context whose ``task`` is inferred (one forward pass) when not given."""
        if task not in (None, "dense", "classification"):
            raise InputError(f"task must be 'dense', 'classification' or None; got {task!r}.")
        return cls(model, example_input, target, loss_fn, task or _infer_task(model, example_input),
                   n_train_samples)


@dataclass(frozen=True)
class ModelCheck:
    """One registered check: ``func(ctx)`` returns a Report; it fails on a warning or an error."""

    id: str
    func: Callable[[CheckContext], Report]
    tags: frozenset[str]
    requires: tuple[Requirement, ...]
    description: str


CHECKS: dict[str, ModelCheck] = {}


def register_check(check_id: str, *, tags: tuple[str, ...] = (), requires: tuple[Requirement, ...] = (),
                   ) -> Callable[[Callable[[CheckContext], Report]], Callable[[CheckContext], Report]]:
    """Decorator adding a check to :data:`CHECKS` under ``check_id`` (its docstring's first line describes it)."""
    def add(func: Callable[[CheckContext], Report]) -> Callable[[CheckContext], Report]:
        summary = (func.__doc__ or check_id).strip().splitlines()[0]
        CHECKS[check_id] = ModelCheck(check_id, func, frozenset(tags), requires, summary)
        return func
    return add


def iter_checks(tags: tuple[str, ...] | None = None) -> Iterator[ModelCheck]:
    """The registered checks, in registration order; only those carrying one of ``tags`` when given."""
    for check in CHECKS.values():
        if tags is None or check.tags & set(tags):
            yield check


def _missing(check: ModelCheck, ctx: CheckContext) -> str:
    needs = {
        "example_input": ctx.example_input is not None,
        "spatial_input": isinstance(ctx.example_input, torch.Tensor) and ctx.example_input.dim() >= 3
        and ctx.example_input.is_floating_point(),
        "target": ctx.target is not None,
        "loss_fn": ctx.loss_fn is not None,
    }
    absent = [r for r in check.requires if not needs[r]]
    return f"needs {' and '.join(a.replace('_', ' ') for a in absent)}" if absent else ""


def run_check(check: ModelCheck, ctx: CheckContext) -> tuple[CheckResult, Report | None]:
    """Run one check: skipped when a requirement is missing or the input does not suit it."""
    missing = _missing(check, ctx)
    if missing:
        return CheckResult(check.id, "skipped", missing), None
    try:
        report = check.func(ctx)
    except DldebugError as exc:
        return CheckResult(check.id, "skipped", str(exc)), None
    bad = report.filter(min_severity=Severity.WARNING)
    if bad:
        return CheckResult(check.id, "failed", "; ".join(dict.fromkeys(f.check for f in bad))), report
    return CheckResult(check.id, "passed"), report


def check_model(
    model: nn.Module,
    example_input: torch.Tensor | None,
    *,
    target: Any = None,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    task: Task | None = None,
    n_train_samples: int | None = None,
    tags: tuple[str, ...] | None = None,
) -> Report:
    """Run every registered check that applies to ``model`` and report a status per check.

    Args:
        model: the PyTorch module (never modified: over-fitting runs on a copy).
        example_input: a real batch for the model, or None (then only input-free checks run).
        target: the targets of that batch; with ``loss_fn`` enables the over-fit check.
        loss_fn: the training loss, e.g. ``nn.CrossEntropyLoss()``.
        task: ``"dense"`` or ``"classification"``; inferred from the output shape when None
            (an output that keeps spatial axes, at any resolution, is dense).
        n_train_samples: the training set size, for the parameter audit.
        tags: run only checks with one of these tags (see ``iter_checks``).

    Returns:
        A Report with one section per check that ran and ``report.checks`` statuses.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"))
        >>> [c.status for c in check_model(net, torch.randn(2, 1, 8, 8), task="dense").checks]
        ['passed', 'passed', 'passed', 'passed', 'skipped']
    """
    ctx = CheckContext.create(model, example_input, target=target, loss_fn=loss_fn, task=task,
                              n_train_samples=n_train_samples)
    statuses, sections = [], []
    for check in iter_checks(tags):
        status, report = run_check(check, ctx)
        statuses.append(status)
        if report is not None:
            sections.append(report)
    return Report(title=f"check_model: {type(model).__name__}", sections=sections, checks=statuses,
                  meta={"task": ctx.task, "checks_failed": sum(s.status == "failed" for s in statuses)})


def _infer_task(model: nn.Module, x: torch.Tensor | None) -> Task | None:
    """Run the model once on ``x`` (a clear error if it fails there) and read the task off its output."""
    if not isinstance(x, torch.Tensor):
        return None
    try:
        with eval_mode(model), torch.no_grad():
            out = model(x)
    except (RuntimeError, TypeError, ValueError, IndexError, NotImplementedError) as exc:
        raise InputError(f"{type(model).__name__} failed on the example input of shape {tuple(x.shape)}: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. "
                         "Give an input the model accepts.") from None
    if x.dim() < 3:
        return None
    if isinstance(out, torch.Tensor) and out.dim() == x.dim() and any(d > 1 for d in out.shape[2:]):
        return "dense"
    return "classification"


def _require_values(x: torch.Tensor | None) -> None:
    if isinstance(x, torch.Tensor) and x.is_meta:
        raise InputError("needs real values; the example input is on the meta device")


@register_check("forward.finite", tags=("forward",), requires=("example_input",))
def check_finite_output(ctx: CheckContext) -> Report:
    """The output on the example input holds no NaN or Inf."""
    _require_values(ctx.example_input)
    with eval_mode(ctx.model), torch.no_grad():
        out = ctx.model(ctx.example_input)
    findings = []
    if isinstance(out, torch.Tensor) and out.is_floating_point() and not bool(torch.isfinite(out).all()):
        bad = int((~torch.isfinite(out)).sum())
        findings.append(Finding("forward.nonfinite_output", Severity.ERROR,
                                f"The model's output holds {bad} NaN/Inf value(s) out of {out.numel()}.",
                                {"nonfinite": bad, "numel": out.numel()},
                                fix="Check the input for NaN, and layers that divide or take logs without an eps."))
    return Report(findings, title="Finite output")


@register_check("capacity", tags=("capacity",))
def check_capacity(ctx: CheckContext) -> Report:
    """No single layer holds most parameters through a flattened conv map (lesson 3)."""
    return parameter_audit(ctx.model, n_train_samples=ctx.n_train_samples, example_input=ctx.example_input)


@register_check("equivariance", tags=("geometry",), requires=("spatial_input",))
def check_equivariance(ctx: CheckContext) -> Report:
    """Dense models stay translation-equivariant, classifiers translation-invariant (lesson 1)."""
    assert ctx.example_input is not None
    _require_values(ctx.example_input)
    return probe_equivariance(ctx.model, ctx.example_input, task=ctx.task or "classification")


@register_check("transfer", tags=("transfer",))
def check_transfer(ctx: CheckContext) -> Report:
    """Where to cut the model for transfer learning, and which layers are task-specific (lesson 4)."""
    return transfer_report(ctx.model)


@register_check("overfit", tags=("training",), requires=("example_input", "target", "loss_fn"))
def check_overfit(ctx: CheckContext) -> Report:
    """A copy of the model over-fits the example batch, starting from a sensible loss (lesson 3)."""
    assert ctx.example_input is not None and ctx.loss_fn is not None
    _require_values(ctx.example_input)
    return can_overfit(ctx.model, (ctx.example_input, ctx.target), ctx.loss_fn).report
