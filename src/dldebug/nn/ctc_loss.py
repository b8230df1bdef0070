"""``CheckedCTCLoss``: ``nn.CTCLoss`` that checks its set-up and names the samples behind an inf/NaN loss.

Lesson 8: a CTC loss that turns NaN says nothing about why. This drop-in
computes exactly what ``nn.CTCLoss`` computes (the per-sample losses of
``F.ctc_loss(reduction="none")`` reduced with PyTorch's own formula), runs
:func:`dldebug.check_ctc` on the first batch (or every batch), and when a
sample's loss is infinite or NaN it raises (or warns) with the sample indices
and the reason for each.

Cost: with ``check="first"`` (the default) or ``"never"``, a batch after the
first adds one ``isfinite`` over the N per-sample losses. On CPU that is read
at once; on CUDA it is copied to the host asynchronously and read at the next
call (or at :meth:`CheckedCTCLoss.flush`), so no host-device sync is added per
step and a non-finite batch is reported one call late.
"""

from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from dldebug.ctc.batch import Lengths, as_batch
from dldebug.ctc.checks import check_ctc
from dldebug.ctc.stats import batch_stats, sample_reason
from dldebug.errors import ConfigError, TrainingCheckError
from dldebug.findings import Report, Severity

__all__ = ["CTCCheckWarning", "CheckedCTCLoss", "NonFiniteCTCLossError"]

CheckMode = Literal["first", "always", "never"]
OnError = Literal["raise", "warn"]
_MAX_PENDING = 2  # deferred CUDA checks in flight before we wait for the oldest
_MAX_REASONS = 10


class CTCCheckWarning(UserWarning):
    """A CTC set-up problem or a non-finite CTC loss, reported with ``on_error="warn"``."""


class NonFiniteCTCLossError(TrainingCheckError):
    """A CTC loss was inf/NaN; ``samples`` and ``reasons`` say which samples and why."""

    def __init__(self, message: str, *, batch: int, samples: list[int], reasons: dict[int, str]) -> None:
        super().__init__(message)
        self.batch = batch
        self.samples = samples
        self.reasons = reasons


@dataclass
class _Pending:
    """A CUDA batch whose non-finite flag is still being copied to the host."""

    flag: torch.Tensor
    event: torch.cuda.Event | None
    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
    losses: torch.Tensor
    batch: int


def _deferrable(device: torch.device) -> bool:
    """Whether reading a flag on this device would stall the host (only accelerators do)."""
    return device.type == "cuda"


class CheckedCTCLoss(nn.CTCLoss):
    """A drop-in for ``torch.nn.CTCLoss`` that checks the set-up and explains inf/NaN losses.

    Args:
        blank: the blank index.
        reduction: ``"mean"`` (per-sample loss divided by its target length, then averaged),
            ``"sum"`` or ``"none"``, as in ``nn.CTCLoss``.
        zero_infinity: zero infinite losses and their gradients, as in ``nn.CTCLoss``
            (infinite samples are then no longer reported; the set-up check still names them).
        num_labels: the number of real labels, when known; makes ``ctc.missing_blank`` certain.
        check: run :func:`dldebug.check_ctc` on the ``"first"`` batch, on ``"always"`` every batch,
            or ``"never"``.
        on_error: ``"raise"`` a :class:`~dldebug.errors.TrainingCheckError` (a
            :class:`NonFiniteCTCLossError` for an inf/NaN loss) or ``"warn"`` with a
            :class:`CTCCheckWarning`, when the set-up check finds an error or a loss is inf/NaN.

    Raises:
        ConfigError: an argument is not one of the allowed values.

    Example:
        >>> loss_fn = CheckedCTCLoss(num_labels=10)
        >>> lp = torch.randn(20, 2, 11).log_softmax(-1)
        >>> loss = loss_fn(lp, torch.tensor([[1, 2], [3, 3]]), [20, 20], [2, 2])
        >>> loss_fn.last_report.ok
        True
    """

    def __init__(self, blank: int = 0, reduction: Literal["none", "mean", "sum"] = "mean",
                 zero_infinity: bool = False, num_labels: int | None = None, check: CheckMode = "first",
                 on_error: OnError = "raise") -> None:
        if reduction not in ("none", "mean", "sum"):
            raise ConfigError(f"reduction must be one of 'none', 'mean', 'sum'; got {reduction!r}.")
        if check not in ("first", "always", "never"):
            raise ConfigError(f"check must be one of 'first', 'always', 'never'; got {check!r}.")
        if on_error not in ("raise", "warn"):
            raise ConfigError(f"on_error must be 'raise' or 'warn'; got {on_error!r}.")
        if isinstance(blank, bool) or not isinstance(blank, int) or blank < 0:
            raise ConfigError(f"blank must be a non-negative int class index; got {blank!r}.")
        if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int)
                                       or num_labels < 1):
            raise ConfigError(f"num_labels must be a positive int or None; got {num_labels!r}.")
        super().__init__(blank=blank, reduction=reduction, zero_infinity=zero_infinity)
        self.num_labels = num_labels
        self.check = check
        self.on_error = on_error
        self.batches_seen = 0
        self.last_report: Report | None = None
        self._pending: deque[_Pending] = deque()

    def extra_repr(self) -> str:
        return (f"blank={self.blank}, reduction={self.reduction!r}, zero_infinity={self.zero_infinity}, "
                f"num_labels={self.num_labels}, check={self.check!r}, on_error={self.on_error!r}")

    def forward(self, log_probs: torch.Tensor, targets: torch.Tensor, input_lengths: Lengths,
                target_lengths: Lengths) -> torch.Tensor:
        """The same loss as ``nn.CTCLoss(blank, reduction, zero_infinity)``; see the class docstring."""
        self._resolve_pending(wait=False)
        checked = self.check == "always" or (self.check == "first" and self.batches_seen == 0)
        if checked:
            self._check_setup(log_probs, targets, input_lengths, target_lengths)
        inputs = (log_probs.detach(), targets, _as_tensor(input_lengths), _as_tensor(target_lengths))
        losses = F.ctc_loss(log_probs, targets, inputs[2], inputs[3], self.blank, reduction="none",
                            zero_infinity=self.zero_infinity)
        if checked or not _deferrable(losses.device):
            bad = ~torch.isfinite(losses.detach())
            if bool(bad.any()):
                self._report_nonfinite(inputs, bad, self.batches_seen)
        else:
            self._defer(losses.detach(), inputs)
        self.batches_seen += 1
        return self._reduce(losses, target_lengths)

    def flush(self) -> None:
        """Wait for the deferred (CUDA) non-finite checks and report any; call it at an epoch's end."""
        self._resolve_pending(wait=True)

    def _reduce(self, losses: torch.Tensor, target_lengths: Lengths) -> torch.Tensor:
        # PyTorch's own reduction (aten/src/ATen/native/LossCTC.cpp), so values and gradients match.
        if self.reduction == "none":
            return losses
        if self.reduction == "sum":
            return losses.sum()
        lengths = torch.as_tensor(target_lengths).to(device=losses.device, dtype=losses.dtype)
        return (losses / lengths.clamp_min(1)).mean()

    def _check_setup(self, log_probs: torch.Tensor, targets: torch.Tensor, input_lengths: Lengths,
                     target_lengths: Lengths) -> None:
        report = check_ctc(log_probs, targets, input_lengths, target_lengths, blank=self.blank,
                           num_labels=self.num_labels)
        self.last_report = report
        for finding in report.filter(severity=Severity.WARNING):
            warnings.warn(f"{finding.check}: {finding.message}. {finding.fix}", CTCCheckWarning, stacklevel=3)
        errors = report.filter(severity=Severity.ERROR)
        if errors:
            lines = "\n".join(f"  {f.check}: {f.message}{_samples_note(f.evidence)}. Fix: {f.fix}" for f in errors)
            self._fail(TrainingCheckError(f"CTC set-up check failed on batch {self.batches_seen} "
                                          f"({len(errors)} error(s)):\n{lines}"))

    def _defer(self, losses: torch.Tensor, inputs: tuple[torch.Tensor, ...]) -> None:
        flag = (~torch.isfinite(losses)).any()
        host = torch.empty((), dtype=torch.bool, pin_memory=torch.cuda.is_available())
        host.copy_(flag, non_blocking=True)
        event = None
        if losses.is_cuda:
            event = torch.cuda.Event()
            event.record()
        self._pending.append(_Pending(host, event, inputs, losses, self.batches_seen))  # type: ignore[arg-type]
        if len(self._pending) > _MAX_PENDING:
            self._resolve_pending(wait=True, limit=len(self._pending) - _MAX_PENDING)

    def _resolve_pending(self, *, wait: bool, limit: int | None = None) -> None:
        resolved = 0
        while self._pending and (limit is None or resolved < limit):
            pending = self._pending[0]
            if pending.event is not None:
                if wait:
                    pending.event.synchronize()
                elif not pending.event.query():
                    return
            self._pending.popleft()
            resolved += 1
            if bool(pending.flag):
                self._report_nonfinite(pending.inputs, ~torch.isfinite(pending.losses), pending.batch)

    def _report_nonfinite(self, inputs: tuple[torch.Tensor, ...], bad: torch.Tensor, batch: int) -> None:
        samples = torch.nonzero(bad.reshape(-1)).reshape(-1).tolist()
        log_probs, targets, input_lengths, target_lengths = inputs
        stats = batch_stats(as_batch(log_probs, targets, input_lengths, target_lengths), self.blank)
        reasons = {i: sample_reason(stats, i) for i in samples[:_MAX_REASONS]}
        listed = "\n".join(f"  sample {i}: {why}" for i, why in reasons.items())
        more = f"\n  ... and {len(samples) - len(reasons)} more" if len(samples) > len(reasons) else ""
        message = (f"CTC loss is inf/NaN for {len(samples)} of {len(stats.input_lengths)} "
                   f"sample(s) in batch {batch}:\n{listed}{more}\n"
                   "Run dldebug.check_ctc on this batch for the full findings and fixes.")
        self._fail(NonFiniteCTCLossError(message, batch=batch, samples=samples, reasons=reasons))

    def _fail(self, error: TrainingCheckError) -> None:
        if self.on_error == "raise":
            raise error
        warnings.warn(str(error), CTCCheckWarning, stacklevel=4)


def _as_tensor(lengths: Lengths) -> torch.Tensor:
    # nn.CTCLoss also takes tuples of ints; as a tensor they give the same loss.
    return lengths if isinstance(lengths, torch.Tensor) else torch.as_tensor(lengths, dtype=torch.int64)



def _samples_note(evidence: dict) -> str:
    samples = evidence.get("samples")
    return f" (samples {samples})" if samples else ""
