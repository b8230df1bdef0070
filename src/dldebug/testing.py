"""Put dldebug's model checks in your own pytest suite.

``assert_can_overfit``, ``assert_equivariant`` and ``assert_invariant`` raise ``AssertionError``
with the evidence; ``parametrize_checks`` turns every registered check into its own test case,
as scikit-learn's ``parametrize_with_checks`` does::

    from dldebug.testing import parametrize_checks

    @parametrize_checks([MyNet()], torch.randn(4, 3, 32, 32), target=y, loss_fn=nn.CrossEntropyLoss())
    def test_my_net(model, check):
        check(model)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dldebug.checks.equivariance import Transform, probe_equivariance
from dldebug.checks.overfit import DEFAULT_STEPS, OverfitResult, can_overfit
from dldebug.checks.registry import CheckContext, ModelCheck, Task, iter_checks, run_check
from dldebug.errors import require
from dldebug.findings import Report
from dldebug.model_io import LossFn, OutputSpec

__all__ = ["BoundCheck", "assert_can_overfit", "assert_equivariant", "assert_invariant", "parametrize_checks"]


def _explain(report: Report, check_id: str) -> str:
    return "\n".join(f"{f.message} Fix: {f.fix}" for f in report.filter(check=check_id))


def assert_can_overfit(model: nn.Module, batch: Any, loss_fn: LossFn | None = None, *,
                       optimizer: torch.optim.Optimizer | None = None, steps: int = DEFAULT_STEPS,
                       lr: float | None = None, output: OutputSpec = None) -> OverfitResult:
    """Assert a copy of ``model`` over-fits ``batch`` (see :func:`dldebug.can_overfit`).

    Returns:
        The :class:`~dldebug.OverfitResult`, for further assertions.

    Raises:
        AssertionError: the loss did not fall near zero within ``steps`` (the message holds the
            numbers, and says whether it stalled or was still falling).
    """
    result = can_overfit(model, batch, loss_fn, optimizer=optimizer, steps=steps, lr=lr, output=output)
    if not result.passed:
        why = _explain(result.report, "capacity.cannot_overfit") or _explain(result.report,
                                                                            "capacity.overfit_unfinished")
        raise AssertionError(f"{type(model).__name__} cannot over-fit one batch: {why}")
    return result


def assert_equivariant(model: nn.Module, x: Any, *, transforms: tuple[Transform, ...] = ("translate",),
                       shifts: tuple[int, ...] = (1, 2, 4), tolerance: float = 1e-3,
                       output: OutputSpec = None) -> Report:
    """Assert every layer of ``model`` is equivariant to ``transforms`` on ``x`` (a dense-task model).

    Raises:
        AssertionError: naming the first layer that breaks equivariance and why.
    """
    report = probe_equivariance(model, x, transforms=transforms, shifts=shifts, task="dense", tolerance=tolerance,
                                output=output)
    if report.has("equivariance.broken"):
        raise AssertionError(f"{type(model).__name__} is not equivariant: {_explain(report, 'equivariance.broken')}")
    return report


def assert_invariant(model: nn.Module, x: Any, *, transforms: tuple[Transform, ...] = ("translate",),
                     shifts: tuple[int, ...] = (1, 2, 4), tolerance: float = 1e-3, output: OutputSpec = None) -> Report:
    """Assert the output of ``model`` is invariant to ``transforms`` on ``x`` (a classifier).

    Raises:
        AssertionError: with the invariance error, the top-1 change rate and the first breaking layer.
    """
    report = probe_equivariance(model, x, transforms=transforms, shifts=shifts, task="classification",
                                tolerance=tolerance, output=output)
    if report.has("invariance.broken"):
        raise AssertionError(f"{type(model).__name__} is not invariant: {_explain(report, 'invariance.broken')}")
    return report


@dataclass(frozen=True)
class BoundCheck:
    """One registered check with its inputs bound; call it with the model inside a test."""

    check: ModelCheck
    example_input: Any
    target: Any = None
    loss_fn: LossFn | None = None
    task: Task | None = None
    output: OutputSpec = None

    def __call__(self, model: nn.Module) -> None:
        pytest = require("pytest", extra="dev", feature="dldebug.testing.parametrize_checks")
        ctx = CheckContext.create(model, self.example_input, target=self.target, loss_fn=self.loss_fn,
                                  task=self.task, output=self.output)
        status, report = run_check(self.check, ctx)
        if status.status == "skipped":
            pytest.skip(f"{self.check.id}: {status.reason}")
        if status.status == "failed":
            details = "\n".join(f"[{f.check}] {f.message} Fix: {f.fix}" for f in report.findings) if report else ""
            raise AssertionError(f"check {self.check.id!r} failed for {type(model).__name__}:\n{details}")

    def __repr__(self) -> str:
        return self.check.id


def parametrize_checks(models: Sequence[nn.Module], example_input: Any, *, target: Any = None,
                       loss_fn: LossFn | None = None, task: Task | None = None,
                       tags: tuple[str, ...] | None = None, output: OutputSpec = None) -> Any:
    """A ``pytest.mark.parametrize`` over ``(model, check)``: one test case per model and registered check.

    Args:
        models: the models to check (the same ``example_input`` is fed to each).
        example_input, target, loss_fn, task, output: as for :func:`dldebug.check_model`.
        tags: only checks carrying one of these tags.

    Returns:
        A pytest mark; decorate ``def test_x(model, check): check(model)`` with it.
    """
    pytest = require("pytest", extra="dev", feature="dldebug.testing.parametrize_checks")
    params, ids = [], []
    for model in models:
        for check in iter_checks(tags):
            params.append((model, BoundCheck(check, example_input, target, loss_fn, task, output)))
            ids.append(f"{type(model).__name__}-{check.id}")
    return pytest.mark.parametrize(("model", "check"), params, ids=ids)
