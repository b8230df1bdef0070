"""Move the CTC blank between the last class and class 0 (ports from TF1 / Keras 2).

``tf.compat.v1.nn.ctc_loss`` and Keras 2's ``K.ctc_batch_cost`` use the LAST
class (C - 1) as the blank, with labels 0..C-2. PyTorch's ``nn.CTCLoss``
(``blank=0`` by default), TF2's ``tf.nn.ctc_loss`` (``blank_index=0``) and
Keras 3's ``keras.ops.ctc_loss`` (``mask_index=0``) use class 0, with labels
1..C-1. Porting a model or its labels means rotating the class dimension by one
and shifting the labels by one — both directions are a single roll.
"""

from __future__ import annotations

import torch

from dldebug.errors import InputError

__all__ = ["blank_first_to_last", "blank_last_to_first"]


def _check(tensor: torch.Tensor | None, name: str, *, integer: bool) -> None:
    if tensor is None:
        return
    if not isinstance(tensor, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor or None; got {type(tensor).__name__}.")
    if integer and tensor.is_floating_point():
        raise InputError(f"{name} must hold integer labels; got a {tensor.dtype} tensor.")


def blank_last_to_first(log_probs: torch.Tensor | None = None, targets: torch.Tensor | None = None, *,
                        class_dim: int = -1) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Convert from blank = C - 1 (TF1, Keras 2) to blank = 0 (PyTorch, TF2, Keras 3).

    Args:
        log_probs: scores with the classes on ``class_dim`` (log-probs, logits, or the
            weight (C, H) / bias (C,) of the output layer with ``class_dim=0``); class C-1
            moves to 0 and class k to k + 1.
        targets: labels in 0..C-2; each becomes label + 1 (padding past the lengths is shifted
            too, which is harmless: CTC never reads it).
        class_dim: the class dimension of ``log_probs``.

    Returns:
        ``(log_probs, targets)`` converted; ``None`` stays ``None``. Inputs are not modified.

    Raises:
        InputError: an argument is not a tensor, or targets are not integers.

    Example:
        >>> lp = torch.tensor([[0.1, 0.2, 0.7]])  # class 2 is the blank (TF1)
        >>> blank_last_to_first(lp, torch.tensor([0, 1]))
        (tensor([[0.7000, 0.1000, 0.2000]]), tensor([1, 2]))
    """
    _check(log_probs, "log_probs", integer=False)
    _check(targets, "targets", integer=True)
    rolled = None if log_probs is None else torch.roll(log_probs, shifts=1, dims=class_dim)
    return rolled, None if targets is None else targets + 1


def blank_first_to_last(log_probs: torch.Tensor | None = None, targets: torch.Tensor | None = None, *,
                        class_dim: int = -1) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Convert from blank = 0 (PyTorch, TF2, Keras 3) to blank = C - 1 (TF1, Keras 2).

    The inverse of :func:`blank_last_to_first`: class 0 moves to C - 1, class k to k - 1,
    and labels 1..C-1 become 0..C-2.

    Example:
        >>> lp = torch.tensor([[0.7, 0.1, 0.2]])  # class 0 is the blank (PyTorch)
        >>> blank_first_to_last(lp, torch.tensor([1, 2]))
        (tensor([[0.1000, 0.2000, 0.7000]]), tensor([0, 1]))
    """
    _check(log_probs, "log_probs", integer=False)
    _check(targets, "targets", integer=True)
    rolled = None if log_probs is None else torch.roll(log_probs, shifts=-1, dims=class_dim)
    return rolled, None if targets is None else targets - 1
