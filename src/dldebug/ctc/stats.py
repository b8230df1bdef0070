"""Per-sample statistics of a CTC batch, computed in a few vectorised passes.

Every check of :func:`dldebug.check_ctc` reads these numbers; computing them
together keeps the checked loss cheap (one pass over the log-probs, one
device-to-host copy per tensor family) and lets :class:`CheckedCTCLoss` name
the reason a given sample's loss is infinite.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dldebug.ctc.batch import CTCBatch

__all__ = ["BatchStats", "batch_stats", "sample_reason"]


@dataclass(frozen=True)
class BatchStats:
    """Plain-Python per-sample numbers of one batch (lists have one entry per sample)."""

    frames: int
    num_classes: int
    blank: int
    input_lengths: list[int]
    target_lengths: list[int]
    target_capacity: list[int]
    repeats: list[int]
    blanks_in_target: list[int]
    out_of_range: list[int]
    nonfinite_frames: list[int]
    unnormalised_frames: list[int]
    max_logsumexp_error: list[float]
    tolerance: float

    def required_frames(self, sample: int) -> int:
        """Frames CTC needs for this sample: one per label plus a blank between adjacent repeats."""
        return min(self.target_lengths[sample], self.target_capacity[sample]) + self.repeats[sample]

    def samples(self, values: list[int]) -> list[int]:
        return [i for i, v in enumerate(values) if v > 0]


def _tolerance(dtype: torch.dtype) -> float:
    # log_softmax in half precision leaves logsumexp errors of a few 1e-3.
    return 2e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-3


def batch_stats(batch: CTCBatch, blank: int) -> BatchStats:
    """Compute the statistics every CTC check needs.

    Args:
        batch: the normalised batch.
        blank: the blank index.

    Returns:
        The statistics, as plain Python values.
    """
    targets, mask = batch.targets, batch.target_mask()
    num_classes = batch.num_classes
    repeats = ((targets[:, 1:] == targets[:, :-1]) & mask[:, 1:]).sum(1)
    blanks = ((targets == blank) & mask).sum(1)
    out_of_range = (((targets < 0) | (targets >= num_classes)) & mask).sum(1)
    target_rows = torch.stack([repeats, blanks, out_of_range]).cpu().tolist()

    lp = batch.log_probs
    if lp.dtype in (torch.float16, torch.bfloat16):
        lp = lp.float()
    tolerance = _tolerance(batch.log_probs.dtype)
    # log(sum(exp)) without the max-shift of logsumexp: 2 passes instead of 5, and exact for
    # log-softmax input (values <= 0). Logits large enough to overflow give inf: still flagged.
    lse = torch.log(torch.exp(lp).sum(-1))  # (T, N): 0 for log-softmax output
    valid = batch.frame_mask()
    nonfinite = torch.isnan(lse) & valid
    error = torch.where(valid & ~nonfinite, lse.abs(), torch.zeros_like(lse))
    unnormalised = error > tolerance
    frame_rows = torch.stack([nonfinite.sum(0).to(error.dtype), unnormalised.sum(0).to(error.dtype),
                              error.amax(0)]).cpu().tolist()
    return BatchStats(
        frames=batch.frames, num_classes=num_classes, blank=blank,
        input_lengths=batch.input_lengths.tolist(), target_lengths=batch.target_lengths.tolist(),
        target_capacity=batch.target_capacity.cpu().tolist(),
        repeats=target_rows[0], blanks_in_target=target_rows[1], out_of_range=target_rows[2],
        nonfinite_frames=[int(v) for v in frame_rows[0]], unnormalised_frames=[int(v) for v in frame_rows[1]],
        max_logsumexp_error=[float(v) for v in frame_rows[2]], tolerance=tolerance,
    )


def sample_reason(stats: BatchStats, sample: int) -> str:
    """Why sample ``sample`` can make the CTC loss infinite or NaN, in one phrase.

    The first applicable reason wins, in the order PyTorch would be affected.
    """
    t, length = stats.input_lengths[sample], stats.target_lengths[sample]
    if t > stats.frames or t < 0 or length < 0 or length > stats.target_capacity[sample]:
        return (f"its lengths do not fit the tensors (input length {t}, T={stats.frames}; target length {length}, "
                f"room for {stats.target_capacity[sample]})")
    if stats.nonfinite_frames[sample]:
        return f"log_probs hold NaN in {stats.nonfinite_frames[sample]} of its {t} frames"
    if stats.out_of_range[sample]:
        return f"its target holds {stats.out_of_range[sample]} label(s) outside [0, C={stats.num_classes})"
    if stats.blanks_in_target[sample]:
        return f"its target holds the blank index {stats.blank} {stats.blanks_in_target[sample]} time(s)"
    required = stats.required_frames(sample)
    if t < required:
        return (f"input length T={t} < target length L={length} + {stats.repeats[sample]} adjacent repeat(s) "
                f"= {required} frames CTC needs")
    if stats.unnormalised_frames[sample]:
        return "its log_probs are not log-softmax outputs (logsumexp over classes is not 0)"
    return ("no set-up problem found: the model gives the target path zero probability "
            "(log-probs of -inf, or an underflow)")
