"""One normal form for a CTC batch: log-probs (T, N, C), padded targets (N, S), int64 lengths.

``torch.nn.CTCLoss`` accepts padded (N, S) or concatenated 1-D targets,
lengths as tensors or tuples, and unbatched (T, C) inputs. The checks work on
one form only; this module converts to it without failing on the very bugs the
checks must report (lengths beyond the tensors, a transposed layout).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from dldebug.errors import ConfigError, InputError

__all__ = ["CTCBatch", "Layout", "TargetFormat", "as_batch", "as_length_tensor"]

Layout = Literal["TNC", "NTC"]
TargetFormat = Literal["padded", "concatenated"]
Lengths = torch.Tensor | Sequence[int] | int


@dataclass(frozen=True)
class CTCBatch:
    """A CTC batch in one form, plus what the conversion learned about it.

    Attributes:
        log_probs: (T, N, C), detached.
        targets: (N, S) labels; entries at or after a sample's (clamped) length are 0.
        input_lengths: (N,) int64 as given.
        target_lengths: (N,) int64 as given.
        target_capacity: (N,) how many labels each sample can really hold in the targets tensor.
        target_format: ``"padded"`` or ``"concatenated"``.
        layout_swapped: True when the declared layout did not fit the batch size but the other one did.
        declared_shape: the shape of log_probs as given (for messages).
    """

    log_probs: torch.Tensor
    targets: torch.Tensor
    input_lengths: torch.Tensor
    target_lengths: torch.Tensor
    target_capacity: torch.Tensor
    target_format: TargetFormat
    layout_swapped: bool
    declared_shape: tuple[int, ...]

    @property
    def frames(self) -> int:
        return int(self.log_probs.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.log_probs.shape[1])

    @property
    def num_classes(self) -> int:
        return int(self.log_probs.shape[2])

    def clamped_target_lengths(self) -> torch.Tensor:
        """Target lengths limited to what the targets tensor holds (and at least 0)."""
        return torch.minimum(self.target_lengths.clamp_min(0), self.target_capacity)

    def clamped_input_lengths(self) -> torch.Tensor:
        """Input lengths limited to [0, T]."""
        return self.input_lengths.clamp(0, self.frames)

    def target_mask(self) -> torch.Tensor:
        """(N, S) True where an entry is part of its sample's target."""
        positions = torch.arange(self.targets.shape[1], device=self.targets.device)
        return positions[None, :] < self.clamped_target_lengths().to(self.targets.device)[:, None]

    def frame_mask(self) -> torch.Tensor:
        """(T, N) True for the frames inside each sample's input length."""
        frames = torch.arange(self.frames, device=self.log_probs.device)
        return frames[:, None] < self.clamped_input_lengths().to(self.log_probs.device)[None, :]


def as_length_tensor(lengths: Lengths, name: str) -> torch.Tensor:
    """Lengths as a 1-D int64 tensor; a clear error for floats, matrices, huge values and non-numbers."""
    if isinstance(lengths, torch.Tensor):
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise InputError(f"{name} must hold integers; got a {lengths.dtype} tensor. "
                             f"Convert it with {name}.long().")
        if lengths.dim() > 1:
            raise InputError(f"{name} must be 1-D (one length per sample); got shape {tuple(lengths.shape)}.")
        return lengths.detach().reshape(-1).to(torch.int64)
    if isinstance(lengths, np.ndarray) and lengths.ndim > 1:
        raise InputError(f"{name} must be 1-D (one length per sample); got shape {lengths.shape}.")
    values: list[Any]
    if _is_integer(lengths):
        values = [lengths]
    elif isinstance(lengths, (Sequence, np.ndarray)) and not isinstance(lengths, (str, bytes)):
        values = list(lengths)
    else:
        raise InputError(f"{name} must be a tensor or a sequence of ints; got {type(lengths).__name__} {lengths!r}.")
    if not all(_is_integer(v) for v in values):
        raise InputError(f"{name} must be a tensor or a sequence of ints; got {lengths!r}.")
    ints = [int(v) for v in values]
    if any(not -2**63 <= v < 2**63 for v in ints):
        raise InputError(f"{name} holds a value beyond int64; got {lengths!r}.")
    return torch.tensor(ints, dtype=torch.int64)


def _is_integer(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def as_batch(log_probs: torch.Tensor, targets: torch.Tensor, input_lengths: Lengths, target_lengths: Lengths,
             *, layout: Layout = "TNC") -> CTCBatch:
    """Convert the arguments of ``nn.CTCLoss`` to a :class:`CTCBatch`.

    Raises:
        InputError: an argument has the wrong type or rank, or no layout fits the batch size.
        ConfigError: ``layout`` is not ``"TNC"`` or ``"NTC"``.
    """
    if layout not in ("TNC", "NTC"):
        raise ConfigError(f"layout must be 'TNC' or 'NTC'; got {layout!r}.")
    _require_log_probs(log_probs)
    _require_targets(targets)
    declared_shape = tuple(int(s) for s in log_probs.shape)
    lp = log_probs.detach()
    inputs = as_length_tensor(input_lengths, "input_lengths")
    lengths = as_length_tensor(target_lengths, "target_lengths")
    if lp.dim() == 2:  # unbatched (T, C), targets (S,)
        if targets.dim() != 1:
            raise InputError(f"unbatched log_probs of shape {declared_shape} need 1-D targets; "
                             f"got targets of shape {tuple(targets.shape)}.")
        lp, targets = lp.unsqueeze(1), targets.reshape(1, -1)
    elif layout == "NTC":
        lp = lp.transpose(0, 1)
    n = int(inputs.numel())
    if int(lengths.numel()) != n:
        raise InputError(f"input_lengths has {n} entries but target_lengths has {int(lengths.numel())}; "
                         "both need one entry per sample.")
    swapped = False
    if int(lp.shape[1]) != n:
        if int(lp.shape[0]) != n:
            raise InputError(f"log_probs of shape {declared_shape} has no batch dimension of size N={n} "
                             f"(the number of input_lengths); expected ({layout}) = "
                             f"{'(T, N, C)' if layout == 'TNC' else '(N, T, C)'}.")
        lp, swapped = lp.transpose(0, 1), True
    padded, capacity, fmt = _padded_targets(targets.detach(), lengths, n)
    return CTCBatch(lp, padded, inputs, lengths, capacity, fmt, swapped, declared_shape)


def _require_log_probs(log_probs: torch.Tensor) -> None:
    if not isinstance(log_probs, torch.Tensor):
        raise InputError(f"log_probs must be a torch.Tensor of shape (T, N, C); got {type(log_probs).__name__}.")
    if not log_probs.is_floating_point():
        raise InputError(f"log_probs must be a floating-point tensor (the output of log_softmax); "
                         f"got {log_probs.dtype}.")
    if log_probs.dim() not in (2, 3) or log_probs.numel() == 0:
        raise InputError(f"log_probs must have shape (T, N, C) or (T, C) with no empty dimension; "
                         f"got shape {tuple(log_probs.shape)}.")


def _require_targets(targets: torch.Tensor) -> None:
    if not isinstance(targets, torch.Tensor):
        raise InputError(f"targets must be an integer torch.Tensor, padded (N, S) or concatenated (sum(L),); "
                         f"got {type(targets).__name__}.")
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise InputError(f"targets must hold integer class indices; got a {targets.dtype} tensor. "
                         "Convert it with targets.long().")
    if targets.dim() not in (1, 2):
        raise InputError(f"targets must be padded (N, S) or concatenated 1-D; got shape {tuple(targets.shape)}.")


def _padded_targets(targets: torch.Tensor, lengths: torch.Tensor,
                    n: int) -> tuple[torch.Tensor, torch.Tensor, TargetFormat]:
    """(N, S) targets, each sample's capacity, and the format the targets came in."""
    lengths = lengths.to(targets.device)
    if targets.dim() == 2:
        if int(targets.shape[0]) != n:
            raise InputError(f"padded targets of shape {tuple(targets.shape)} have {int(targets.shape[0])} "
                             f"rows but there are N={n} samples (entries of input_lengths).")
        mask = torch.arange(targets.shape[1], device=targets.device)[None, :] < lengths.clamp_min(0)[:, None]
        capacity = torch.full((n,), int(targets.shape[1]), dtype=torch.int64, device=targets.device)
        return torch.where(mask, targets, torch.zeros_like(targets)).to(torch.int64), capacity, "padded"
    # Concatenated: torch reads sample i from offset sum(lengths[:i]); lengths past the end overflow.
    total = int(targets.numel())
    ends = torch.cumsum(lengths.clamp_min(0), 0)
    starts = ends - lengths.clamp_min(0)
    capacity = (total - starts).clamp_min(0)
    kept = torch.minimum(lengths.clamp_min(0), capacity)
    width = max(int(kept.max()) if n else 0, 1)
    padded = torch.zeros((n, width), dtype=torch.int64, device=targets.device)
    owner = torch.repeat_interleave(torch.arange(n, device=targets.device), kept)
    kept_starts = torch.cumsum(kept, 0) - kept
    position = torch.arange(int(kept.sum()), device=targets.device) - kept_starts[owner]
    padded[owner, position] = targets[starts[owner] + position].to(torch.int64)
    return padded, capacity, "concatenated"
