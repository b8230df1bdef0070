"""Pre-flight checks that run training steps or backward passes on copies of the set-up."""

from __future__ import annotations

from typing import Any

import torch

from dldebug.findings import Finding, Severity
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
            setup.train_step(work.model, (setup.inputs, setup.targets), work.loss_fn, work.optimizer)
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


def batch_mixing(setup: TrainingSetup, *, batch_dim: int = 0) -> CheckOutcome:
    """The gradient of one sample's output w.r.t. another sample's input must be zero (eval mode)."""
    if setup.batch_size < 2:
        return [], "needs a batch of at least 2 samples"
    if not setup.inputs.is_floating_point():
        return [], "inputs are not floating point (no input gradient)"
    work = setup.copy()
    work.model.eval()  # BatchNorm's batch statistics mix samples legitimately in train mode
    x = setup.inputs.detach().clone().requires_grad_(True)
    out: Any = work.model(x)
    if not isinstance(out, torch.Tensor) or out.shape[batch_dim] != x.shape[batch_dim]:
        return [], "the output has no batch dimension matching the input"
    weights = torch.randn(out.select(batch_dim, 0).shape, generator=torch.Generator().manual_seed(0))
    (out.select(batch_dim, 0) * weights).sum().backward()
    assert x.grad is not None
    grad = x.grad.abs().flatten(start_dim=1) if batch_dim == 0 else x.grad.transpose(0, batch_dim).abs().flatten(1)
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


def cannot_overfit(setup: TrainingSetup, *, steps: int = 100) -> CheckOutcome:
    """Lesson 3's test via ``dldebug.can_overfit``: a copy must drive the loss on one batch near zero."""
    try:
        from dldebug.checks import can_overfit
    except ImportError as exc:  # pragma: no cover - the checks package ships with dldebug
        return [], f"dldebug.checks is unavailable ({exc})"
    result = can_overfit(setup.model, (setup.inputs, setup.targets), setup.loss_fn, steps=steps)
    if result.passed:
        return [], None
    return [Finding("preflight.cannot_overfit", Severity.ERROR,
                    f"the model cannot over-fit one batch: loss {result.initial_loss:.3g} -> {result.final_loss:.3g} "
                    f"in {steps} steps", {"initial_loss": float(result.initial_loss),
                                          "final_loss": float(result.final_loss), "steps": steps}, lesson=3,
                    fix="A model that cannot memorise one batch has a bug or too little signal: check the checks "
                        "above, then shrink the dominant layer (dldebug.parameter_audit) or raise the learning rate.")
            ], None
