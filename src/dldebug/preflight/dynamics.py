"""Pre-flight checks that run training steps or backward passes on copies of the set-up."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from dldebug.checks.layers import leaf_modules
from dldebug.checks.overfit import DEFAULT_STEPS
from dldebug.findings import Finding, Severity
from dldebug.model_io import select_output
from dldebug.preflight.checks import CheckOutcome
from dldebug.preflight.setup import TrainingSetup


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def grad_accumulation(setup: TrainingSetup) -> CheckOutcome:
    """Run the user's train_step twice on one batch with lr 0: cleared gradients repeat, stale ones double."""
    if setup.train_step is None:
        return [], "no train_step given: pass train_step=(model, batch, loss_fn, optimizer) -> loss to test it"
    work = setup.copy(lr=0.0)  # parameters stay put, so both steps see the same model
    rng = torch.get_rng_state()
    snapshots = []
    try:
        for _ in range(2):
            torch.manual_seed(0)  # identical dropout masks in both steps
            setup.train_step(work.model, setup.raw_batch, work.loss_fn, work.optimizer)
            snapshots.append(_grads(work.model))
    finally:
        torch.set_rng_state(rng)
    first, second = snapshots
    shared = [n for n in first if n in second and float(first[n].norm()) > 0]
    if not shared:
        return [], "gradients are cleared after each step, so accumulation cannot be observed (that is fine)"
    dot = sum(float((second[n] * first[n]).sum()) for n in shared)
    norm = sum(float((first[n] * first[n]).sum()) for n in shared)
    ratio = dot / norm
    if ratio < 1.5:
        return [], None
    return [Finding("preflight.grad_accumulation", Severity.ERROR,
                    f"gradients are not cleared between steps: the second step's gradient is {ratio:.2f}x the first",
                    {"gradient_ratio": ratio, "parameters_compared": len(shared)},
                    fix="Call optimizer.zero_grad() (or model.zero_grad()) once per step, before loss.backward(). "
                        "If you accumulate on purpose, divide the loss by the number of accumulation steps.")], None


@contextlib.contextmanager
def _first_activation(model: nn.Module, batch_size: int, found: list[torch.Tensor]) -> Iterator[None]:
    """Make the first floating output of a leaf module (an embedding's, for token ids) a leaf that keeps its grad."""
    def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        if found or not isinstance(output, torch.Tensor) or not output.is_floating_point() \
                or output.dim() == 0 or output.shape[0] != batch_size:
            return None
        found.append(output.detach().requires_grad_(True))
        return found[-1]

    handles = [m.register_forward_hook(hook) for _, m in leaf_modules(model)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def batch_mixing(setup: TrainingSetup) -> CheckOutcome:
    """The gradient of one sample's output w.r.t. another sample's input must be zero (eval mode).

    With token ids (no floating input) the gradient is taken w.r.t. the first floating activation,
    the embedding's output.
    """
    size = setup.batch_size
    if size < 2:
        return [], "needs a batch of at least 2 samples"
    work = setup.copy()
    work.model.eval()  # BatchNorm's batch statistics mix samples legitimately in train mode
    x = setup.float_input()
    found: list[torch.Tensor] = []
    if x is not None and x.shape[0] == size:
        found.append(x.detach().clone().requires_grad_(True))
        batch = setup.batch.map(lambda t: found[0] if t is x else t)
        out = select_output(batch.call(work.model), setup.output, tool="preflight")
    else:
        with _first_activation(work.model, size, found):
            out = select_output(setup.batch.call(work.model), setup.output, tool="preflight")
        if not found:
            return [], "no floating input or activation with a batch dimension to differentiate"
    if out.dim() == 0 or out.shape[0] != size or not out.requires_grad:
        return [], "the output has no batch dimension matching the input"
    weights = torch.randn(out[0].shape, generator=torch.Generator().manual_seed(0)).to(out.device, out.dtype)
    (out[0] * weights).sum().backward()
    grad = found[0].grad
    if grad is None:
        return [], "the output does not depend on the inputs"
    grad = grad.abs().flatten(start_dim=1)
    own = float(grad[0].max())
    others = grad[1:].max(dim=1).values
    leaking = [int(i) + 1 for i in torch.nonzero(others > 1e-6 * max(own, 1e-12)).flatten()]
    if not leaking:
        return [], None
    return [Finding("preflight.batch_mixing", Severity.ERROR,
                    f"sample 0's output depends on {len(leaking)} other sample(s) of the batch",
                    {"leaking_samples": leaking[:20], "own_gradient_max": own,
                     "other_gradient_max": float(others.max())},
                    fix="A reshape/view/permute mixes the batch dimension (e.g. x.view(-1, N) instead of "
                        "x.view(N, -1), or a transpose before a flatten); keep dim 0 as the batch.")], None


def cannot_overfit(setup: TrainingSetup, *, steps: int = DEFAULT_STEPS) -> CheckOutcome:
    """Lesson 3's test via ``dldebug.can_overfit`` with the user's optimizer: a copy must memorise one batch.

    An error only when the loss stalls (or crawls, diverges, or nothing can train); still falling
    at the cap is an info finding with the numbers.
    """
    from dldebug.checks.overfit import can_overfit

    result = can_overfit(setup.model, setup.raw_batch, setup.loss_fn, optimizer=setup.optimizer, steps=steps,
                         output=setup.output)
    renamed = {"capacity.cannot_overfit": "preflight.cannot_overfit",
               "capacity.overfit_unfinished": "preflight.overfit_unfinished"}
    findings = [Finding(renamed[f.check], f.severity, f.message, f.evidence, f.fix, f.lesson)
                for f in result.findings if f.check in renamed]
    return findings, None
