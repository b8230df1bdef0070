"""Pure decisions of the monitor: over-confident logits (lesson 6) and batch-size changes (lesson 11).

Each function takes plain numbers and returns a :class:`Finding` or None, so
the judgement can be tested without a training loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dldebug.findings import Finding, Severity

__all__ = ["LOGIT_FIELDS", "judge_batch_change", "judge_overconfidence", "logit_statistics", "track_batch"]

BATCH_CONFIRM_STEPS = 3  # a size must persist this long: an epoch's short last batch is not a change
LOGIT_FIELDS = ("loss", "top_logit", "runner_up", "rest_mean", "gap", "top_prob", "accuracy")
_MAX_ROWS = 4096

# Over-confidence thresholds. A margin of 8 between the two largest logits leaves
# each other class under e^-8 = 3.4e-4 of the top one's softmax weight: the
# gradient of a correct sample has all but vanished, and only growing the logits
# further can still lower the loss (lesson 6 saw a margin of ~20).
GAP_MIN = 8.0
TOP_PROB_MIN = 0.999
GAP_GROWTH_MIN = 2.0
LOSS_DROP_MIN = 100.0


def logit_statistics(logits: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """Batch means of top logit, runner-up, mean of the rest, top-2 gap, top softmax probability, accuracy.

    Returns a 6-element tensor on the logits' device (no host sync); accuracy is
    NaN without class-index ``targets``. Logits of any shape ``(..., classes)`` are
    flattened to rows; at most 4,096 rows are used.
    """
    rows = logits.detach().reshape(-1, logits.shape[-1])[:_MAX_ROWS].float()
    if rows.device.type == "cpu" and rows.shape[-1] >= 2:
        return torch.from_numpy(_statistics_numpy(rows.numpy(), targets))  # ~5x fewer overheads on small batches
    return _statistics_torch(rows, targets)


def _statistics_torch(rows: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """:func:`logit_statistics` with torch ops on the rows' device (no host sync)."""
    top2, top_index = rows.topk(2, dim=-1)
    top, runner = top2[:, 0], top2[:, 1]
    columns = [top, runner, (rows.sum(dim=-1) - top) / (rows.shape[-1] - 1), top - runner,
               torch.exp(top - torch.logsumexp(rows, dim=-1))]
    labels = None
    if targets is not None and not targets.is_floating_point():
        labels = targets.detach().reshape(-1)[:_MAX_ROWS].to(rows.device)
    if labels is not None and labels.shape[0] == rows.shape[0]:
        columns.append((top_index[:, 0] == labels).float())
    else:
        columns.append(torch.full_like(top, float("nan")))
    return torch.stack(columns, dim=1).mean(dim=0)  # one reduction for all six statistics


def _statistics_numpy(rows: np.ndarray, targets: torch.Tensor | None) -> np.ndarray:
    """:func:`logit_statistics` for CPU tensors, in numpy (same six values)."""
    classes = rows.shape[-1]
    with np.errstate(all="ignore"):  # NaN/Inf logits give NaN statistics, silently (the loss check reports them)
        ordered = np.partition(rows, classes - 2, axis=1)  # the two largest end up last, in order
        top, runner = ordered[:, -1], ordered[:, -2]
        top_prob = 1.0 / np.exp(rows - top[:, None]).sum(axis=1)
        accuracy = np.full_like(top, np.nan)
        if targets is not None and not targets.is_floating_point():
            labels = targets.detach().reshape(-1)[:_MAX_ROWS].cpu().numpy()
            if labels.shape[0] == rows.shape[0]:
                accuracy = (rows.argmax(axis=1) == labels).astype(rows.dtype)
        columns = (top, runner, (rows.sum(axis=1) - top) / (classes - 1), top - runner, top_prob, accuracy)
        return np.stack(columns, axis=1).mean(axis=0)


def _start_end_medians(values: np.ndarray) -> tuple[float, float]:
    """Medians of the first tenth (where the run started) and of the last quarter (where it is now)."""
    arr = np.asarray(values, dtype=float)
    head, tail = max(2, len(arr) // 10), max(2, len(arr) // 4)
    return float(np.nanmedian(arr[:head])), float(np.nanmedian(arr[-tail:]))


def judge_overconfidence(steps: Sequence[int], rows: Sequence[Sequence[float]]) -> Finding | None:
    """``logits.overconfident`` when the top-2 logit gap exploded, softmax mass is ~1 and the loss is ~0.

    Args:
        steps: the step of each row.
        rows: rows of :data:`LOGIT_FIELDS` values, in step order.

    Returns:
        A warning finding with the logit values and their trend, or None.
    """
    if len(rows) < 8:
        return None
    table = np.asarray(rows, dtype=float)
    if not np.isfinite(table[:, :-1]).all():
        return None  # non-finite runs are reported by the non-finite checks
    loss, top, runner, rest, gap, prob, accuracy = (table[:, j] for j in range(len(LOGIT_FIELDS)))
    gap_early, gap_late = _start_end_medians(gap)
    loss_early, loss_late = _start_end_medians(loss)
    prob_late = _start_end_medians(prob)[1]
    growth = gap_late / max(gap_early, 1e-6)
    loss_drop = loss_early / max(loss_late, 1e-12)
    if not (gap_late >= GAP_MIN and prob_late >= TOP_PROB_MIN and growth >= GAP_GROWTH_MIN
            and loss_drop >= LOSS_DROP_MIN):
        return None
    q = max(1, len(loss) // 4)
    late_loss = loss[-q:]
    spikes = float(np.max(late_loss) / max(float(np.median(late_loss)), 1e-12))
    first = int(np.argmax(gap >= GAP_MIN))
    return Finding(
        "logits.overconfident", Severity.WARNING,
        f"logits exploded: the top logit leads the runner-up by {gap_late:.1f} (x{growth:.0f} since the start) "
        f"and takes {prob_late:.5f} of the softmax mass while the loss sits at {loss_late:.2g}",
        {
            "start_step": int(steps[first]), "end_step": int(steps[-1]),
            "top_logit": float(np.median(top[-q:])), "runner_up_logit": float(np.median(runner[-q:])),
            "rest_mean_logit": float(np.median(rest[-q:])), "gap_start": gap_early, "gap_end": gap_late,
            "gap_growth": float(growth), "top_prob": prob_late, "loss_start": loss_early, "loss_end": loss_late,
            "loss_spike_ratio": spikes, "train_accuracy": float(np.nanmedian(accuracy[-q:]))
            if np.isfinite(accuracy[-q:]).any() else float("nan"), "samples": len(rows),
        },
        fix="Regularise the head: label smoothing (CrossEntropyLoss(label_smoothing=0.1)), weight decay, "
            "dropout, or a logit penalty/temperature; remove multiplicative gains on the logits "
            "(e.g. x * (1 + a) attention); get more data or stop earlier.",
        lesson=6,
    )


def judge_batch_change(step: int, old_batch: int, new_batch: int, old_lr: float | None, new_lr: float | None,
                       *, optimizer: str | None = None) -> Finding | None:
    """``lr.batch_changed`` when the batch size changed but the learning rate did not follow.

    The learning rate "followed" when it moved at least half way (in log scale)
    towards the square-root rule, the gentler of the two scaling rules.

    Args:
        step: the first step at the new batch size.
        old_batch, new_batch: batch sizes before and after.
        old_lr, new_lr: learning rates before and after (None: unknown, no judgement).
        optimizer: optimizer name for the suggested rule (``"adam"``: sqrt, ``"sgd"``: linear).

    Returns:
        A warning naming the learning rate the linear scaling rule suggests, or None.
    """
    from dldebug.lr import scale_lr

    if old_lr is None or new_lr is None or old_lr <= 0 or new_lr <= 0 or old_batch == new_batch:
        return None
    needed = abs(math.log(math.sqrt(new_batch / old_batch)))
    moved = math.log(new_lr / old_lr) * (1 if new_batch > old_batch else -1)
    if moved >= 0.5 * needed:
        return None
    linear = scale_lr(old_lr, old_batch, new_batch, rule="linear")
    sqrt = scale_lr(old_lr, old_batch, new_batch, rule="sqrt")
    return Finding(
        "lr.batch_changed", Severity.WARNING,
        f"batch size changed {old_batch} -> {new_batch} at step {step} but the learning rate stayed at "
        f"{new_lr:.3g}; the linear scaling rule suggests {linear.lr:.3g}",
        {"step": step, "old_batch_size": old_batch, "new_batch_size": new_batch, "old_lr": float(old_lr),
         "new_lr": float(new_lr), "suggested_lr": float(linear.lr), "suggested_lr_sqrt": float(sqrt.lr),
         "optimizer": optimizer or "unknown"},
        fix=f"Scale the learning rate with the batch size: {linear.rationale} For Adam-like optimisers the "
            f"square-root rule ({sqrt.lr:.3g}) is often better; warm up over the first epochs "
            "(dldebug.lr.scale_lr).",
        lesson=11,
    )


def track_batch(batch: dict[str, Any], step: int, size: int, lr: float | None, base_batch_size: int | None,
                base_lr: float | None) -> Finding | None:
    """Follow the batch size across steps (``batch`` is the running state, updated in place).

    A new size counts once it has held for 3 steps; then, or at the first step when it differs
    from ``base_batch_size``, :func:`judge_batch_change` decides.

    Returns:
        The ``lr.batch_changed`` finding of this step, or None.
    """
    if not batch:
        batch.update(size=size, lr=lr, candidate=None)
        if base_batch_size is not None and size != base_batch_size:
            return judge_batch_change(step, base_batch_size, size, lr if base_lr is None else base_lr, lr)
        return None
    candidate = batch["candidate"]
    if size == batch["size"]:
        batch.update(lr=lr, candidate=None)
    elif candidate is not None and candidate[0] == size:
        candidate[2] += 1
        if candidate[2] >= BATCH_CONFIRM_STEPS:
            finding = judge_batch_change(candidate[1], batch["size"], size, batch["lr"], lr)
            batch.update(size=size, lr=lr, candidate=None)
            return finding
    else:
        batch["candidate"] = [size, step, 1]
    return None
