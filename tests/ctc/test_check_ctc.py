"""check_ctc: every finding fires on its bug and stays silent on valid set-ups (lesson 8)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dldebug import check_ctc
from dldebug.ctc.batch import as_batch
from dldebug.errors import ConfigError, InputError


def problem_ids(report) -> set[str]:
    return {f.check for f in report.findings if f.check != "ctc.cudnn_eligible"}


@pytest.mark.parametrize("concatenated", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_valid_setup_has_no_findings(make_setup, concatenated: bool, seed: int) -> None:
    setup = make_setup(seed=seed, concatenated=concatenated)
    report = check_ctc(*setup.args(), num_labels=7)
    assert problem_ids(report) == set()
    assert report.ok and report.has("ctc.cudnn_eligible")
    assert report.meta["target_format"] == ("concatenated" if concatenated else "padded")


def test_valid_setup_in_other_layouts_and_dtypes(make_setup) -> None:
    setup = make_setup(dtype=torch.float64)
    lp, targets, il, tl = setup.args()
    assert problem_ids(check_ctc(lp.transpose(0, 1), targets, il, tl, layout="NTC")) == set()
    assert problem_ids(check_ctc(lp.half(), targets, il, tl)) == set()
    assert problem_ids(check_ctc(lp, targets, tuple(il.tolist()), tuple(tl.tolist()))) == set()
    # unbatched (T, C) with a 1-D target, as nn.CTCLoss accepts
    assert problem_ids(check_ctc(lp[:, 0], targets[0, :int(tl[0])], int(il[0]), int(tl[0]))) == set()


def test_garbage_in_padded_frames_is_ignored(make_setup) -> None:
    setup = make_setup()
    lp = setup.log_probs.clone()
    il = setup.input_lengths.clone()
    il[1] = 20
    lp[20:, 1] = 0.0  # padding frames past the input length are never read by CTC
    assert problem_ids(check_ctc(lp, setup.targets, il, setup.target_lengths)) == set()


def _bug(make_setup, name: str) -> Any:
    s = make_setup()
    T, N, C = s.log_probs.shape
    if name == "missing_blank":  # C = 7 labels and no blank: targets use 1..7 as for an 8-class layer
        s.log_probs = torch.randn(T, N, C - 1, generator=torch.Generator().manual_seed(3)).log_softmax(-1)
    elif name == "blank_in_targets":
        s.targets[2, 0] = 0
    elif name == "target_out_of_range":
        s.targets[3, 0] = C
    elif name == "not_log_softmax":
        s.log_probs = s.log_probs.exp()
    elif name == "nonfinite_log_probs":
        s.log_probs[3, 2, :] = float("nan")
    elif name == "layout":
        s.log_probs = s.log_probs.transpose(0, 1).contiguous()
    elif name == "infeasible_length":
        s.targets[4] = 5
        s.target_lengths[4] = 6
        s.input_lengths[4] = 10  # 6 labels + 5 repeats = 11 frames needed
    elif name == "empty_target":
        s.target_lengths[1] = 0
    elif name == "length_overflow":
        s.input_lengths[0] = T + 1
    return s


BUGS = ["missing_blank", "blank_in_targets", "target_out_of_range", "not_log_softmax", "nonfinite_log_probs",
        "layout", "infeasible_length", "empty_target", "length_overflow"]


@pytest.mark.parametrize("bug", BUGS)
def test_each_bug_fires_its_finding(make_setup, bug: str) -> None:
    s = _bug(make_setup, bug)
    report = check_ctc(*s.args(), num_labels=7)
    found = report.get(f"ctc.{bug}")
    assert found is not None, problem_ids(report)
    assert found.lesson == 8 and found.fix
    expected_severity = "warning" if bug == "empty_target" else "error"
    assert found.severity.value == expected_severity
    assert not report.ok if expected_severity == "error" else report.ok
    # evidence is plain JSON: round-trips losslessly
    assert type(report).from_json(report.to_json()) == report


@pytest.mark.parametrize("bug", ["blank_in_targets", "target_out_of_range", "infeasible_length", "empty_target",
                                 "length_overflow", "missing_blank"])
def test_concatenated_targets_give_the_same_findings(make_setup, bug: str) -> None:
    s = _bug(make_setup, bug)
    lengths = s.target_lengths.clamp_min(0)
    concatenated = torch.cat([s.targets[i, :int(n)] for i, n in enumerate(lengths)])
    padded = problem_ids(check_ctc(*s.args(), num_labels=7))
    assert problem_ids(check_ctc(s.log_probs, concatenated, s.input_lengths, s.target_lengths,
                                 num_labels=7)) == padded


def test_missing_blank_is_inferred_without_num_labels() -> None:
    lp = torch.randn(30, 10, 10).log_softmax(-1)  # lesson 8: 10 digits, 10 outputs
    targets = torch.arange(1, 11).reshape(10, 1)  # digits encoded 1..10 for blank=0
    report = check_ctc(lp, targets, [30] * 10, [1] * 10)
    found = report.get("ctc.missing_blank")
    assert found is not None and found.evidence["inferred"] is True and found.evidence["distinct_labels"] == 10
    assert report.has("ctc.target_out_of_range")
    assert not check_ctc(torch.randn(30, 10, 11).log_softmax(-1), targets, [30] * 10, [1] * 10).has(
        "ctc.missing_blank")


def test_blank_outside_classes_is_missing_blank(make_setup) -> None:
    s = make_setup()
    report = check_ctc(*s.args(), blank=8)  # TF1 habit: blank = num_labels, but C = 8
    assert report.get("ctc.missing_blank").evidence == {"C": 8, "blank": 8, "num_labels": None}


def test_not_log_softmax_names_what_it_sees(make_setup) -> None:
    s = make_setup()
    logits = s.log_probs + 3.0
    probs = s.log_probs.exp()
    seen = {name: check_ctc(lp, s.targets, s.input_lengths, s.target_lengths).get("ctc.not_log_softmax")
            for name, lp in (("logits", logits), ("probs", probs))}
    assert seen["logits"].evidence["looks_like"] == "raw logits"
    assert seen["probs"].evidence["looks_like"] == "probabilities (softmax output)"
    assert seen["logits"].evidence["max_abs_logsumexp"] == pytest.approx(3.0, abs=1e-4)


@pytest.mark.parametrize("concatenated", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_infeasible_length_matches_torch_infinite_losses(seed: int, concatenated: bool) -> None:
    """Oracle: PyTorch's per-sample loss is inf exactly for the samples the check names."""
    g = torch.Generator().manual_seed(seed)
    T, N, C, S = 12, 32, 4, 8
    lp = torch.randn(T, N, C, generator=g).log_softmax(-1)
    targets = torch.randint(1, C, (N, S), generator=g)  # few classes: many adjacent repeats
    target_lengths = torch.randint(1, S + 1, (N,), generator=g)
    input_lengths = torch.randint(1, T + 1, (N,), generator=g)
    if concatenated:
        targets = torch.cat([targets[i, :int(n)] for i, n in enumerate(target_lengths)])
    losses = F.ctc_loss(lp, targets, input_lengths, target_lengths, reduction="none")
    expected = torch.nonzero(torch.isinf(losses)).reshape(-1).tolist()
    assert expected, "the random batch should contain infeasible samples"
    found = check_ctc(lp, targets, input_lengths, target_lengths).get("ctc.infeasible_length")
    assert found.evidence["samples"] == expected[:20]
    assert found.evidence["num_samples"] == len(expected)
    table = check_ctc(lp, targets, input_lengths, target_lengths).table("ctc.infeasible_samples")
    offsets = [0, *torch.cumsum(target_lengths, 0).tolist()]
    for sample, t, length, repeats, needed in table.rows:
        row = targets[offsets[sample]:offsets[sample + 1]] if concatenated else targets[sample, :length]
        naive_repeats = sum(int(row[k] == row[k - 1]) for k in range(1, length))
        assert (repeats, needed) == (naive_repeats, length + naive_repeats) and t < needed


def test_length_overflow_of_concatenated_targets(make_setup) -> None:
    s = make_setup(concatenated=True)
    lengths = s.target_lengths.clone()
    lengths[-1] += 2  # the sum runs past the concatenated tensor
    found = check_ctc(s.log_probs, s.targets, s.input_lengths, lengths).get("ctc.length_overflow")
    assert found.evidence["target_samples"] == [len(lengths) - 1]
    assert found.evidence["sum_target_lengths"] == int(s.targets.numel()) + 2
    assert found.message == "1 target length(s) negative or beyond the concatenated targets"


def test_concatenated_targets_normalise_like_a_naive_loop(make_setup, naive_padded) -> None:
    s = make_setup(concatenated=True, seed=4)
    batch = as_batch(*s.args())
    expected = naive_padded(s.targets, s.target_lengths, int(batch.targets.shape[1]))
    assert torch.equal(batch.targets, expected)


def test_layout_finding_names_the_shapes(make_setup) -> None:
    s = _bug(make_setup, "layout")
    found = check_ctc(*s.args()).get("ctc.layout")
    assert found.message == ("log_probs of shape (6, 40, 8) was declared (T, N, C) but its batch size N=6 "
                             "(from input_lengths) fits (N, T, C)")
    assert not check_ctc(*s.args(), layout="NTC").has("ctc.layout")


def test_cudnn_conditions(make_setup) -> None:
    s = make_setup(concatenated=True)
    full = torch.full_like(s.input_lengths, s.log_probs.shape[0])
    eligible = check_ctc(s.log_probs, s.targets.int(), full.int(), s.target_lengths.int()).get("ctc.cudnn_eligible")
    assert eligible.evidence["failed"] == ["device_cuda"]  # everything but the device holds
    padded = check_ctc(*make_setup().args()).get("ctc.cudnn_eligible")
    assert {"targets_concatenated", "all_input_lengths_equal_T", "integers_int32"} <= set(padded.evidence["failed"])
    assert check_ctc(*s.args(), blank=0).get("ctc.cudnn_eligible").severity.value == "info"


BAD_INPUTS: list[tuple[str, Callable[[Any], tuple], type[Exception], str]] = [
    ("float targets", lambda s: (s.log_probs, s.targets.float(), s.input_lengths, s.target_lengths), InputError,
     "targets must hold integer class indices; got a torch.float32 tensor. Convert it with targets.long()."),
    ("int log_probs", lambda s: (s.targets, s.targets, s.input_lengths, s.target_lengths), InputError,
     "log_probs must be a floating-point tensor (the output of log_softmax); got torch.int64."),
    ("no batch dim", lambda s: (s.log_probs, s.targets, s.input_lengths[:5], s.target_lengths[:5]), InputError,
     "log_probs of shape (40, 6, 8) has no batch dimension of size N=5 (the number of input_lengths); "
     "expected (TNC) = (T, N, C)."),
    ("length count", lambda s: (s.log_probs, s.targets, s.input_lengths, s.target_lengths[:5]), InputError,
     "input_lengths has 6 entries but target_lengths has 5; both need one entry per sample."),
    # regressions of the fuzzer (tests/reliability): these raised TypeError / RuntimeError before
    ("None lengths", lambda s: (s.log_probs, s.targets, None, s.target_lengths), InputError,
     "input_lengths must be a tensor or a sequence of ints; got NoneType None."),
    ("huge length", lambda s: (s.log_probs, s.targets, [2**70] * 6, s.target_lengths), InputError,
     "input_lengths holds a value beyond int64"),
    ("float list", lambda s: (s.log_probs, s.targets, s.input_lengths, [1.5] * 6), InputError,
     "target_lengths must be a tensor or a sequence of ints; got [1.5, 1.5"),
    ("2-D numpy lengths", lambda s: (s.log_probs, s.targets, s.input_lengths.numpy().reshape(2, 3), s.target_lengths),
     InputError, "input_lengths must be 1-D (one length per sample); got shape (2, 3)."),
]


@pytest.mark.parametrize(("case", "make", "error", "text"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_inputs_raise_one_clear_error(make_setup, case: str, make, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=re.escape(text)):
        check_ctc(*make(make_setup()))


def test_numpy_lengths_give_the_same_report_as_tensors(make_setup) -> None:
    s = make_setup()
    as_numpy = check_ctc(s.log_probs, s.targets, s.input_lengths.numpy(), [np.int32(n) for n in s.target_lengths])
    assert as_numpy.findings == check_ctc(*s.args()).findings


def test_bad_options_raise_clear_errors(make_setup) -> None:
    s = make_setup()
    with pytest.raises(ConfigError, match=re.escape("layout must be 'TNC' or 'NTC'; got 'NCT'.")):
        check_ctc(*s.args(), layout="NCT")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="num_labels must be a positive int"):
        check_ctc(*s.args(), num_labels=0)
    with pytest.raises(InputError, match=re.escape("blank must be an int class index; got 1180591620717411303424.")):
        check_ctc(*s.args(), blank=2**70)  # found by the fuzzer: OverflowError comparing targets with it
