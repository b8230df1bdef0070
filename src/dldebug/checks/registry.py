"""A registry of model checks and :func:`check_model`, which runs every check that applies.

Modelled on scikit-learn's ``check_estimator``: each check is a plain function with tags and
requirements; the suite yields the ones that apply and records a status per check (passed /
failed / skipped with the reason). ``dldebug.testing.parametrize_checks`` runs the same checks as
separate pytest cases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from dldebug.checks.capacity import parameter_audit
from dldebug.checks.equivariance import probe_equivariance
from dldebug.checks.geometry import SpatialInput, layout
from dldebug.checks.layers import eval_mode
from dldebug.checks.overfit import can_overfit
from dldebug.checks.transfer import transfer_report
from dldebug.errors import DldebugError, InputError
from dldebug.findings import CheckResult, Finding, Report, Severity
from dldebug.model_io import (
    TARGET_KEYS,
    LossFn,
    OutputSpec,
    call_model,
    describe,
    iter_tensors,
    map_tensors,
    select_output,
)

__all__ = ["CHECKS", "CheckContext", "ModelCheck", "check_model", "iter_checks", "register_check", "run_check"]

Task = Literal["dense", "classification"]
Requirement = Literal["example_input", "spatial_input", "target", "loss_fn"]


@dataclass(frozen=True)
class CheckContext:
    """What a check may use; ``task`` is inferred from the output shape when not given.

    ``example_input`` is the model's inputs: a tensor, a tuple (positional) or a dict (keyword
    arguments, e.g. a Hugging Face batch, with its ``labels`` when ``loss_fn`` is None).
    """

    model: nn.Module
    example_input: Any = None
    target: Any = None
    loss_fn: LossFn | None = None
    task: Task | None = None
    n_train_samples: int | None = None
    output: OutputSpec = None
    optimizer: torch.optim.Optimizer | None = None
    task_inferred: bool = False

    @classmethod
    def create(cls, model: nn.Module, example_input: Any = None, *, target: Any = None,
               loss_fn: LossFn | None = None, task: Task | None = None, n_train_samples: int | None = None,
               output: OutputSpec = None, optimizer: torch.optim.Optimizer | None = None) -> CheckContext:
        """A context whose ``task`` is inferred (one forward pass) when not given.

        A model on the meta device gets its example input moved there (only shapes matter then).
        """
        if task not in (None, "dense", "classification"):
            raise InputError(f"task must be 'dense', 'classification' or None; got {task!r}.")
        if example_input is not None and _on_meta(model):
            example_input = map_tensors(example_input, lambda t: t.to("meta"))
        inferred = _infer_task(model, example_input, output) if task is None else task
        return cls(model, example_input, target, loss_fn, inferred, n_train_samples, output, optimizer,
                   task_inferred=task is None)

    def own_loss(self) -> bool:
        """True when the model computes its own loss: ``loss_fn=None`` and a dict input holding ``labels``."""
        return (self.loss_fn is None and isinstance(self.example_input, Mapping)
                and any(k in self.example_input for k in TARGET_KEYS))

    def user_batch(self) -> Any:
        """The batch as the over-fit test takes it: ``(x, y)``, ``(*xs, y)``, or the dict (labels inside)."""
        x, y = self.example_input, self.target
        if isinstance(x, Mapping):
            return dict(x) if y is None else {**x, "labels": y}
        if isinstance(x, (tuple, list)):
            return (*x, y)
        return (x, y)


def _on_meta(model: nn.Module) -> bool:
    return any(p.is_meta for p in model.parameters())


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


def _has_spatial_input(inputs: Any) -> bool:
    try:
        SpatialInput.find(inputs)
    except InputError:
        return False
    return True


def _missing(check: ModelCheck, ctx: CheckContext) -> str:
    needs = {
        "example_input": ctx.example_input is not None,
        "spatial_input": ctx.example_input is not None and _has_spatial_input(ctx.example_input),
        "target": ctx.target is not None or ctx.own_loss(),
        "loss_fn": ctx.loss_fn is not None or ctx.own_loss(),
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
    example_input: Any,
    *,
    target: Any = None,
    loss_fn: LossFn | None = None,
    task: Task | None = None,
    n_train_samples: int | None = None,
    tags: tuple[str, ...] | None = None,
    output: OutputSpec = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> Report:
    """Run every registered check that applies to ``model`` and report a status per check.

    Args:
        model: the PyTorch module (never modified: over-fitting runs on a copy).
        example_input: a real batch of the model's inputs (a tensor, a tuple of positional or a dict
            of keyword arguments), or None (then only input-free checks run).
        target: the targets of that batch; with ``loss_fn`` enables the over-fit check.
        loss_fn: the training loss, e.g. ``nn.CrossEntropyLoss()``; None with a dict input holding
            ``labels``: the model computes its own loss (the over-fit check runs on ``outputs.loss``).
        task: ``"dense"`` or ``"classification"``; inferred from the output shape when None
            (an output that keeps spatial axes, at the input's size or a whole factor smaller or
            larger, or a token grid, is dense). An
            inferred classifier that is not shift-invariant gets an info finding, not a warning:
            most CNN classifiers are not, and it is not a bug; pass ``task="classification"`` to
            hold the model to invariance.
        n_train_samples: the training set size, for the parameter audit.
        tags: run only checks with one of these tags (see ``iter_checks``).
        output: which tensor of a structured output to read (default ``logits``, else
            ``last_hidden_state``, else the first tensor).
        optimizer: the optimizer you train with, for the over-fit check (default Adam 1e-3).

    Returns:
        A Report with one section per check that ran and ``report.checks`` statuses.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"))
        >>> [c.status for c in check_model(net, torch.randn(2, 1, 8, 8), task="dense").checks]
        ['passed', 'passed', 'passed', 'passed', 'skipped']
    """
    ctx = CheckContext.create(model, example_input, target=target, loss_fn=loss_fn, task=task,
                              n_train_samples=n_train_samples, output=output, optimizer=optimizer)
    statuses, sections = [], []
    for check in iter_checks(tags):
        status, report = run_check(check, ctx)
        statuses.append(status)
        if report is not None:
            sections.append(report)
    return Report(title=f"check_model: {type(model).__name__}", sections=sections, checks=statuses,
                  meta={"task": ctx.task, "checks_failed": sum(s.status == "failed" for s in statuses)})


def _infer_task(model: nn.Module, inputs: Any, output: OutputSpec) -> Task | None:
    """Run the model once on ``inputs`` (a clear error if it fails there) and read the task off its output."""
    if inputs is None:
        return None
    try:
        with eval_mode(model), torch.no_grad():
            raw = call_model(model, inputs)
    except DldebugError:
        raise
    except Exception as exc:
        if _on_meta(model):
            return None  # meta tensors have no values: the checks that need them are skipped anyway
        raise InputError(f"{type(model).__name__} failed on the example input {describe(inputs)}: "
                         f"{str(exc).splitlines()[0].rstrip('.') if str(exc) else type(exc).__name__}. "
                         "Give an input the model accepts.") from None
    if not _has_spatial_input(inputs):
        return None
    x = SpatialInput.find(inputs).x
    out = select_output(raw, output, tool="check_model")
    where = layout(out, x)
    if where.kind == "tokens":
        return "dense"
    if where.kind == "map" and any(d > 1 for d in where.grid) and all(
            _commensurate(d, int(s)) for d, s in zip(where.grid, x.shape[2:], strict=True)):
        return "dense"
    return "classification"


def _commensurate(size: int, input_size: int) -> bool:
    """An output axis of ``size`` can be the input's axis at another resolution (down- or up-sampled by a whole factor).

    A sequence model's ``(N, T, vocab)`` logits on a ``(N, C, L)`` input keep three axes but hold no map of it:
    a vocabulary of 100 is no resolution of 32 frames.
    """
    return size == 1 or size % input_size == 0 or input_size % size == 0


def _require_values(inputs: Any) -> None:
    if any(t.is_meta for t in iter_tensors(inputs)):
        raise InputError("needs real values; the example input is on the meta device")


@register_check("forward.finite", tags=("forward",), requires=("example_input",))
def check_finite_output(ctx: CheckContext) -> Report:
    """The output on the example input holds no NaN or Inf (every floating tensor of a structured output)."""
    _require_values(ctx.example_input)
    with eval_mode(ctx.model), torch.no_grad():
        raw = call_model(ctx.model, ctx.example_input)
    floats = [t for t in iter_tensors(raw) if t.is_floating_point()]
    bad = sum(int((~torch.isfinite(t)).sum()) for t in floats)
    findings = []
    if bad:
        numel = sum(t.numel() for t in floats)
        findings.append(Finding("forward.nonfinite_output", Severity.ERROR,
                                f"The model's output holds {bad} NaN/Inf value(s) out of {numel}.",
                                {"nonfinite": bad, "numel": numel, "output": describe(raw)},
                                fix="Check the input for NaN, and layers that divide or take logs without an eps."))
    return Report(findings, title="Finite output")


@register_check("capacity", tags=("capacity",))
def check_capacity(ctx: CheckContext) -> Report:
    """No single layer holds most parameters through a flattened conv map (lesson 3)."""
    return parameter_audit(ctx.model, n_train_samples=ctx.n_train_samples, example_input=ctx.example_input)


@register_check("equivariance", tags=("geometry",), requires=("spatial_input",))
def check_equivariance(ctx: CheckContext) -> Report:
    """Dense models stay translation-equivariant, classifiers translation-invariant (lesson 1)."""
    _require_values(ctx.example_input)
    report = probe_equivariance(ctx.model, ctx.example_input, task=ctx.task or "classification", output=ctx.output)
    if ctx.task_inferred and ctx.task != "dense":
        # an inferred classifier: most CNN classifiers are not shift-invariant, and that is no bug
        findings = [Finding(f.check, Severity.INFO, f.message + " (task inferred; pass task='classification' to "
                            "require invariance)", f.evidence, f.fix, f.lesson)
                    if f.check == "invariance.broken" else f for f in report.findings]
        report = Report(findings, title=report.title, tables=report.tables, meta=report.meta)
    return report


@register_check("transfer", tags=("transfer",))
def check_transfer(ctx: CheckContext) -> Report:
    """Where to cut the model for transfer learning, and which layers are task-specific (lesson 4)."""
    return transfer_report(ctx.model)


@register_check("overfit", tags=("training",), requires=("example_input", "target", "loss_fn"))
def check_overfit(ctx: CheckContext) -> Report:
    """A copy of the model over-fits the example batch, starting from a sensible loss (lesson 3)."""
    _require_values(ctx.example_input)
    return can_overfit(ctx.model, ctx.user_batch(), ctx.loss_fn, optimizer=ctx.optimizer, output=ctx.output).report
