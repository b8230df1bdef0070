"""``check_ctc``: validate a CTC set-up before training (lesson 8).

CTC needs C + 1 output classes (the labels plus the blank). Forgetting the +1,
targets that contain the blank, raw logits instead of log-softmax, a (N, T, C)
tensor passed as (T, N, C), or input sequences too short for their targets
give NaN or infinite losses, exploding gradients, or a silently wrong loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dldebug.ctc.batch import CTCBatch, Layout, Lengths, as_batch
from dldebug.ctc.stats import BatchStats, batch_stats
from dldebug.errors import InputError
from dldebug.findings import Finding, Report, Severity, Table

__all__ = ["check_batch", "check_ctc"]

LESSON = 8
_MAX_LISTED = 20  # sample indices listed in a finding's evidence; the table holds them all


def check_ctc(log_probs: torch.Tensor, targets: torch.Tensor, input_lengths: Lengths, target_lengths: Lengths,
              *, blank: int = 0, num_labels: int | None = None, layout: Layout = "TNC") -> Report:
    """Check the arguments of ``nn.CTCLoss`` for the classic CTC bugs.

    Args:
        log_probs: (T, N, C) log-probabilities (``layout="NTC"``: (N, T, C)); (T, C) when unbatched.
        targets: padded (N, S) or concatenated 1-D integer labels.
        input_lengths: (N,) frames per sample (tensor or sequence of ints).
        target_lengths: (N,) labels per sample.
        blank: the blank index the loss will use.
        num_labels: the number of real labels (without the blank), when known; makes
            ``ctc.missing_blank`` certain instead of inferred from the targets.
        layout: how ``log_probs`` is laid out.

    Returns:
        A Report with the findings ``ctc.missing_blank``, ``ctc.blank_in_targets``,
        ``ctc.target_out_of_range``, ``ctc.not_log_softmax``, ``ctc.nonfinite_log_probs``, ``ctc.layout``,
        ``ctc.infeasible_length``, ``ctc.empty_target``, ``ctc.length_overflow`` (each only when it
        applies) and always the info ``ctc.cudnn_eligible``.

    Raises:
        InputError: an argument has the wrong type or rank, or ``num_labels`` < 1.
        ConfigError: ``layout`` is not ``"TNC"`` or ``"NTC"``.

    Example:
        >>> lp = torch.randn(12, 2, 10).log_softmax(-1)  # 10 classes for 10 digits: no blank
        >>> targets = torch.tensor([[1, 2, 3], [9, 9, 0]])
        >>> report = check_ctc(lp, targets, [12, 12], [3, 2], num_labels=10)
        >>> [f.check for f in report.filter(min_severity="warning")]
        ['ctc.missing_blank']
    """
    if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int)
                                   or num_labels < 1):
        raise InputError(f"num_labels must be a positive int (the labels without the blank) or None; "
                         f"got {num_labels!r}.")
    if isinstance(blank, bool) or not isinstance(blank, int) or not -2**63 <= blank < 2**63:
        raise InputError(f"blank must be an int class index; got {blank!r}.")
    batch = as_batch(log_probs, targets, input_lengths, target_lengths, layout=layout)
    integer_dtypes = (targets.dtype, _dtype_of(input_lengths), _dtype_of(target_lengths))
    return check_batch(batch, blank=blank, num_labels=num_labels, layout=layout, device=log_probs.device.type,
                       log_probs_dtype=log_probs.dtype, integer_dtypes=integer_dtypes)


def _dtype_of(lengths: Lengths) -> torch.dtype:
    return lengths.dtype if isinstance(lengths, torch.Tensor) else torch.int64


def check_batch(batch: CTCBatch, *, blank: int, num_labels: int | None, layout: Layout = "TNC",
                device: str = "cpu", log_probs_dtype: torch.dtype = torch.float32,
                integer_dtypes: tuple[torch.dtype, ...] = (torch.int64,)) -> Report:
    """Run every CTC check on an already normalised batch; see :func:`check_ctc`."""
    stats = batch_stats(batch, blank)
    findings: list[Finding] = []
    tables: list[Table] = []
    for check in _CHECKS:
        found = check(batch, stats, blank, num_labels, layout)
        if found is not None:
            findings.append(found)
    infeasible = _infeasible_samples(stats)
    if infeasible:
        findings.append(_infeasible_finding(stats, infeasible))
        tables.append(_infeasible_table(stats, infeasible))
    findings.append(_cudnn_finding(stats, batch.target_format, blank, device, log_probs_dtype, integer_dtypes))
    meta = {"T": batch.frames, "N": batch.batch_size, "C": batch.num_classes, "blank": blank,
            "target_format": batch.target_format, "layout": layout, "num_labels": num_labels}
    return Report(findings, title="CTC set-up check", tables=tables, meta=meta)


def _listed(samples: list[int]) -> list[int]:
    return samples[:_MAX_LISTED]


def _missing_blank(batch: CTCBatch, stats: BatchStats, blank: int, num_labels: int | None,
                   layout: Layout) -> Finding | None:
    c = batch.num_classes
    fix = (f"Give the layer before log_softmax num_labels + 1 outputs (e.g. nn.Linear(hidden, num_labels + 1)), "
           f"keep the blank at index {blank} and the labels on the other indices.")
    if not 0 <= blank < c:
        return Finding("ctc.missing_blank", Severity.ERROR,
                       f"the blank index {blank} is outside the C={c} classes of log_probs: there is no blank class",
                       {"C": c, "blank": blank, "num_labels": num_labels}, fix, LESSON)
    if num_labels is not None:
        if c > num_labels:
            return None
        return Finding("ctc.missing_blank", Severity.ERROR,
                       f"log_probs has C={c} classes for {num_labels} labels: no room for the blank "
                       f"(CTC needs C = num_labels + 1 = {num_labels + 1})",
                       {"C": c, "num_labels": num_labels, "blank": blank, "inferred": False}, fix, LESSON)
    if not any(stats.blanks_in_target) and not any(stats.out_of_range):
        return None  # every label is in [0, C) and not the blank: at most C - 1 distinct labels
    valid = batch.targets[batch.target_mask()]
    distinct = int(torch.unique(valid).numel()) if valid.numel() else 0
    if distinct < c:
        return None
    return Finding("ctc.missing_blank", Severity.ERROR,
                   f"the targets use {distinct} distinct labels but log_probs has only C={c} classes: "
                   f"no room for the blank (CTC needs at least {distinct + 1})",
                   {"C": c, "distinct_labels": distinct, "blank": blank, "inferred": True}, fix, LESSON)


def _blank_in_targets(batch: CTCBatch, stats: BatchStats, blank: int, num_labels: int | None,
                      layout: Layout) -> Finding | None:
    samples = stats.samples(stats.blanks_in_target)
    if not samples:
        return None
    count = sum(stats.blanks_in_target)
    return Finding("ctc.blank_in_targets", Severity.ERROR,
                   f"{count} target label(s) in {len(samples)} sample(s) equal the blank index {blank}",
                   {"blank": blank, "occurrences": count, "num_samples": len(samples), "samples": _listed(samples)},
                   f"Encode labels so none equals the blank: with blank={blank}, map class k to "
                   f"{'k + 1' if blank == 0 else 'an index other than ' + str(blank)}; for labels from TF1/Keras 2 "
                   f"(blank last) use dldebug.ctc.blank_last_to_first.", LESSON)


def _target_out_of_range(batch: CTCBatch, stats: BatchStats, blank: int, num_labels: int | None,
                         layout: Layout) -> Finding | None:
    samples = stats.samples(stats.out_of_range)
    if not samples:
        return None
    valid = batch.targets[batch.target_mask()]
    c = batch.num_classes
    return Finding("ctc.target_out_of_range", Severity.ERROR,
                   f"{sum(stats.out_of_range)} target label(s) in {len(samples)} sample(s) lie outside "
                   f"[0, C={c}); PyTorch reads past the class dimension without an error",
                   {"C": c, "min_label": int(valid.min()), "max_label": int(valid.max()),
                    "occurrences": sum(stats.out_of_range), "num_samples": len(samples), "samples": _listed(samples)},
                   f"Labels must be class indices in [0, {c}) other than the blank; check the label encoding and "
                   "that the output layer has num_labels + 1 units.", LESSON)


def _not_log_softmax(batch: CTCBatch, stats: BatchStats, blank: int, num_labels: int | None,
                     layout: Layout) -> Finding | None:
    samples = stats.samples(stats.unnormalised_frames)
    if not samples:
        return None
    frames_used = batch.log_probs[batch.frame_mask()]  # (frames, C)
    positive = bool((frames_used > 0).any())
    in_unit = bool(((frames_used >= 0) & (frames_used <= 1)).all())
    kind = "probabilities (softmax output)" if in_unit else ("raw logits" if positive else "unnormalised scores")
    frames = sum(stats.unnormalised_frames)
    return Finding("ctc.not_log_softmax", Severity.ERROR,
                   f"log_probs look like {kind}: logsumexp over classes is far from 0 in {frames} frame(s)",
                   {"max_abs_logsumexp": max(stats.max_logsumexp_error), "frames_off": frames,
                    "frames_checked": sum(min(max(t, 0), batch.frames) for t in stats.input_lengths),
                    "tolerance": stats.tolerance, "positive_values": positive, "looks_like": kind,
                    "num_samples": len(samples), "samples": _listed(samples)},
                   "Apply log_softmax over the class dimension (model(x).log_softmax(-1)); unlike "
                   "nn.CrossEntropyLoss, nn.CTCLoss does not normalise its input.", LESSON)


def _nonfinite_log_probs(batch: CTCBatch, stats: BatchStats, blank: int, num_labels: int | None,
                         layout: Layout) -> Finding | None:
    samples = stats.samples(stats.nonfinite_frames)
    if not samples:
        return None
    return Finding("ctc.nonfinite_log_probs", Severity.ERROR,
                   f"log_probs hold NaN in {sum(stats.nonfinite_frames)} frame(s) of "
                   f"{len(samples)} sample(s): the loss will be NaN",
                   {"frames": sum(stats.nonfinite_frames), "num_samples": len(samples), "samples": _listed(samples)},
                   "The model already diverged before the loss: lower the learning rate, clip gradients, "
                   "and look for the first layer producing NaN.", LESSON)


def _layout(batch: CTCBatch, stats: BatchStats, blank: int, num_labels: int | None,
            layout: Layout) -> Finding | None:
    if not batch.layout_swapped:
        return None
    other = "(N, T, C)" if layout == "TNC" else "(T, N, C)"
    declared = "(T, N, C)" if layout == "TNC" else "(N, T, C)"
    return Finding("ctc.layout", Severity.ERROR,
                   f"log_probs of shape {batch.declared_shape} was declared {declared} but its batch size "
                   f"N={batch.batch_size} (from input_lengths) fits {other}",
                   {"shape": list(batch.declared_shape), "declared": layout, "N": batch.batch_size,
                    "T": batch.frames},
                   "nn.CTCLoss expects (T, N, C): pass log_probs.transpose(0, 1), or build the RNN with "
                   "batch_first=False. The other checks ran on the transposed tensor.", LESSON)


def _empty_target(batch: CTCBatch, stats: BatchStats, blank: int, num_labels: int | None,
                  layout: Layout) -> Finding | None:
    samples = [i for i, n in enumerate(stats.target_lengths) if n == 0]
    if not samples:
        return None
    return Finding("ctc.empty_target", Severity.WARNING,
                   f"{len(samples)} sample(s) have an empty target (target length 0)",
                   {"num_samples": len(samples), "samples": _listed(samples)},
                   "Empty targets are legal (the loss is -log P(all blanks)) but usually mean an empty "
                   "transcript or a lengths bug; drop those samples or check target_lengths.", LESSON)


def _length_overflow(batch: CTCBatch, stats: BatchStats, blank: int, num_labels: int | None,
                     layout: Layout) -> Finding | None:
    inputs = [i for i, t in enumerate(stats.input_lengths) if t > batch.frames or t < 0]
    targets = [i for i, (n, room) in enumerate(zip(stats.target_lengths, stats.target_capacity, strict=True))
               if n > room or n < 0]
    if not inputs and not targets:
        return None
    room = "S" if batch.target_format == "padded" else "the concatenated targets"
    parts = []
    if inputs:
        parts.append(f"{len(inputs)} input length(s) outside [0, T={batch.frames}]")
    if targets:
        parts.append(f"{len(targets)} target length(s) negative or beyond {room}")
    return Finding("ctc.length_overflow", Severity.ERROR, " and ".join(parts),
                   {"T": batch.frames, "max_input_length": max(stats.input_lengths),
                    "input_samples": _listed(inputs), "target_samples": _listed(targets),
                    "target_format": batch.target_format, "sum_target_lengths": sum(stats.target_lengths),
                    "targets_size": int(batch.target_capacity[0]) if batch.batch_size else 0},
                   "Lengths must describe the tensors: input_lengths <= T (frames after the model's "
                   "down-sampling) and target_lengths within targets (their sum for concatenated targets).",
                   LESSON)


_CHECKS: tuple[Callable[[CTCBatch, BatchStats, int, int | None, Layout], Finding | None], ...] = (
    _layout, _length_overflow, _missing_blank, _blank_in_targets, _target_out_of_range,
    _nonfinite_log_probs, _not_log_softmax, _empty_target,
)


def _infeasible_samples(stats: BatchStats) -> list[int]:
    return [i for i, t in enumerate(stats.input_lengths)
            if 0 <= t <= stats.frames and t < stats.required_frames(i)]


def _infeasible_finding(stats: BatchStats, samples: list[int]) -> Finding:
    listed = _listed(samples)
    return Finding("ctc.infeasible_length", Severity.ERROR,
                   f"{len(samples)} sample(s) have fewer frames than CTC needs (T < L + adjacent repeats): "
                   "their loss is infinite",
                   {"num_samples": len(samples), "samples": listed,
                    "T": [stats.input_lengths[i] for i in listed], "L": [stats.target_lengths[i] for i in listed],
                    "repeats": [stats.repeats[i] for i in listed]},
                   "Give the model more output frames (less temporal down-sampling) or shorten/drop these "
                   "targets; zero_infinity=True only hides them.", LESSON)


def _infeasible_table(stats: BatchStats, samples: list[int]) -> Table:
    rows = tuple((i, stats.input_lengths[i], stats.target_lengths[i], stats.repeats[i], stats.required_frames(i))
                 for i in samples)
    return Table("ctc.infeasible_samples", ("sample", "T", "L", "repeats", "frames needed"), rows,
                 caption="CTC needs one frame per label plus a blank frame between adjacent repeated labels.")


def _cudnn_finding(stats: BatchStats, target_format: str, blank: int, device: str,
                   log_probs_dtype: torch.dtype, integer_dtypes: tuple[torch.dtype, ...]) -> Finding:
    # The conditions of at::_use_cudnn_ctc_loss, as documented for nn.CTCLoss.
    conditions = {
        "device_cuda": device == "cuda",
        "blank_is_0": blank == 0,
        "targets_concatenated": target_format == "concatenated",
        "all_input_lengths_equal_T": all(t == stats.frames for t in stats.input_lengths),
        "target_lengths_below_256": all(n < 256 for n in stats.target_lengths),
        "log_probs_float32": log_probs_dtype == torch.float32,
        "integers_int32": all(d == torch.int32 for d in integer_dtypes),
    }
    failed = [name for name, ok in conditions.items() if not ok]
    if not failed:
        message = "cuDNN's CTC conditions hold: PyTorch will use the cuDNN kernel"
    else:
        message = f"PyTorch will use its native CTC kernel, not cuDNN's ({len(failed)} condition(s) fail)"
    return Finding("ctc.cudnn_eligible", Severity.INFO, message,
                   {**conditions, "failed": failed},
                   None if not failed else "For cuDNN: CUDA log_probs in float32, blank=0, concatenated int32 "
                   "targets, int32 lengths, every input length = T, target lengths < 256. The native kernel is "
                   "correct too; cuDNN is only faster and may be non-deterministic.", None)
