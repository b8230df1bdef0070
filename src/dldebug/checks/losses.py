"""Is the training loss a cross-entropy over class logits? Also when the model computes it itself.

Checks that reason about class logits (the initial loss against ln(C), a softmax before the loss,
targets out of range) need to know the loss is a cross-entropy (or NLL) and where the class axis
is. A named loss (``nn.CrossEntropyLoss``, ``F.cross_entropy``) says so; with ``loss_fn=None`` the
model's own loss (Hugging Face: ``outputs.loss``) is compared with ``F.cross_entropy`` of its
logits -- an oracle, not a guess: equal to 1e-4, the loss is a cross-entropy over that layout.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ClassLogits", "class_logits", "is_cross_entropy", "is_nll"]

HF_IGNORE_INDEX = -100


def is_cross_entropy(loss_fn: object) -> bool:
    return isinstance(loss_fn, nn.CrossEntropyLoss) or loss_fn is F.cross_entropy


def is_nll(loss_fn: object) -> bool:
    return isinstance(loss_fn, nn.NLLLoss) or loss_fn is F.nll_loss


@dataclass(frozen=True)
class ClassLogits:
    """Class scores with the class axis at dim 1 (``(N, C, ...)``), their targets and the loss kind."""

    kind: Literal["cross_entropy", "nll"]
    logits: torch.Tensor
    targets: Any
    ignore_index: int = HF_IGNORE_INDEX

    @property
    def classes(self) -> int:
        return int(self.logits.shape[1])


def _layouts(logits: torch.Tensor, targets: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Candidate ``(N, C, ...)`` views: class axis 1 (torch convention), or last (Hugging Face)."""
    views = []
    if logits.dim() == targets.dim() + 1 and logits.shape[0] == targets.shape[0]:
        if logits.shape[2:] == targets.shape[1:]:
            views.append((logits, targets))
        if logits.dim() > 2 and logits.shape[:-1] == targets.shape:
            views.append((logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)))
    return views


def class_logits(loss_fn: Callable[..., torch.Tensor] | None, output: Any, targets: Any,
                 own_loss: float | None = None) -> ClassLogits | None:
    """The class-logit view of ``output`` when the loss is a cross-entropy/NLL over it, else None.

    Args:
        loss_fn: the user's loss, or None when the model computes its own.
        output: the tensor the loss reads (``logits``).
        targets: the batch's targets (``labels``).
        own_loss: with ``loss_fn=None``, the loss the model returned on this very forward pass.
    """
    if not isinstance(output, torch.Tensor) or output.dim() < 2 or not output.is_floating_point():
        return None
    if loss_fn is not None:
        kind: Literal["cross_entropy", "nll"] | None = (
            "cross_entropy" if is_cross_entropy(loss_fn) else "nll" if is_nll(loss_fn) else None)
        if kind is None:
            return None
        return ClassLogits(kind, output, targets, int(getattr(loss_fn, "ignore_index", HF_IGNORE_INDEX)))
    if own_loss is None or not math.isfinite(own_loss) or not isinstance(targets, torch.Tensor) \
            or targets.is_floating_point():
        return None
    for logits, labels in _layouts(output, targets):
        with torch.no_grad():
            try:
                oracle = float(F.cross_entropy(logits.float(), labels.long(), ignore_index=HF_IGNORE_INDEX))
            except (IndexError, RuntimeError, ValueError):  # targets out of range for this layout
                continue
        if math.isclose(oracle, own_loss, rel_tol=1e-4, abs_tol=1e-6):
            return ClassLogits("cross_entropy", logits, labels)
    return None
