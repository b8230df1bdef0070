"""diagnose_curve on synthetic curve families, real digits losses and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dldebug import ConfigError, InputError, Severity, diagnose_curve

ALARMS = ("loss.nonfinite", "loss.diverging", "loss.stuck", "loss.oscillating", "loss.collapsed")


def checks(report) -> list[str]:
    return [f.check for f in report.findings]


@pytest.mark.parametrize("n", [40, 300, 5000, 50_000])
@pytest.mark.parametrize("noise", [0.0, 0.02, 0.1, 0.3])
@pytest.mark.parametrize("scale", [1e-4, 1.0, 1e5])
def test_healthy_noisy_decay_is_silent(n: int, noise: float, scale: float, families) -> None:
    report = diagnose_curve(families.healthy(n, noise, scale, seed=n))
    assert report.filter(min_severity="warning") == ()
    assert bool(report)


@pytest.mark.parametrize("seed", range(5))
def test_healthy_with_isolated_spikes_is_silent(seed: int, families) -> None:
    curve = families.with_spikes(families.healthy(800, 0.05, seed=seed), count=6, seed=seed)
    assert checks(diagnose_curve(curve)) == []


@pytest.mark.parametrize("onset", [0.15, 0.3, 0.5, 0.7])
@pytest.mark.parametrize("noise", [0.01, 0.05])
def test_plateau_boundaries_are_pinned(onset: float, noise: float, families) -> None:
    curve, start = families.plateau_then_fall(2000, onset, noise, seed=int(onset * 100))
    steps = 10 * np.arange(len(curve))  # the caller's step units: logged every 10 steps
    report = diagnose_curve(curve, steps)
    assert checks(report) == ["loss.plateau"]
    plateau = report.get("loss.plateau")
    # info when it broke early; a warning once it took a long share (>= 40%) of the run
    assert plateau.severity is (Severity.INFO if onset < 0.4 else Severity.WARNING) and plateau.lesson == 2
    assert plateau.evidence["start_step"] == 0
    # end_step is the onset of the fall (last step inside the noise band): within 3% of the true
    # onset plus 0.5% of the run (the fall must first clear the noise band)
    assert abs(plateau.evidence["end_step"] - 10 * start) <= 10 * (0.03 * start + 0.005 * len(curve))
    assert plateau.evidence["level_before"] == pytest.approx(2.3, abs=0.02)
    assert plateau.evidence["level_after"] < 0.6


@pytest.mark.parametrize("drop", [0.01, 0.03, 0.05, 0.1])
def test_plateau_after_a_short_initial_drop(drop: float) -> None:
    t = np.arange(2000)
    drop_end = int(drop * 2000)
    clean = np.where(t < drop_end, 3.0 - 0.7 * t / drop_end,
                     np.where(t < 800, 2.3, 0.2 + 2.1 * np.exp(-(t - 800) / 200)))
    curve = clean + 0.02 * np.random.default_rng(5).standard_normal(2000)
    plateau = diagnose_curve(curve).get("loss.plateau")
    assert plateau is not None
    assert abs(plateau.evidence["start_step"] - drop_end) <= 0.01 * 2000
    assert abs(plateau.evidence["end_step"] - 800) <= 0.03 * 800
    assert plateau.evidence["level_before"] == pytest.approx(2.3, abs=0.02)


def test_plateau_on_a_long_binned_curve_keeps_caller_steps(families) -> None:
    curve, start = families.plateau_then_fall(200_000, 0.4, 0.05, seed=3)
    plateau = diagnose_curve(curve).get("loss.plateau")
    assert plateau is not None
    assert abs(plateau.evidence["end_step"] - start) <= 0.03 * start


@pytest.mark.parametrize("noise", [0.0, 0.01, 0.1])
def test_fully_flat_curve_is_stuck_and_mentions_the_early_plateau(noise: float, families) -> None:
    report = diagnose_curve(families.flat(600, noise=noise))
    assert checks(report) == ["loss.stuck"]
    stuck = report.get("loss.stuck")
    assert stuck.severity is Severity.ERROR and stuck.lesson == 3
    assert "lesson 2" in stuck.message and "over-fits one small batch" in stuck.message
    assert "learning rate" in stuck.fix and "lesson 3" in stuck.fix
    assert (stuck.evidence["start_step"], stuck.evidence["end_step"]) == (0, 599)


def test_flat_with_spikes_is_stuck_not_diverging(families) -> None:
    curve = families.with_spikes(families.flat(600), count=8, height=5.0)
    assert checks(diagnose_curve(curve)) == ["loss.stuck"]


def test_fell_then_levelled_off_has_converged() -> None:
    t = np.arange(1000)
    curve = np.where(t < 200, 2.3 - 2.0 * t / 200, 0.3) + 0.01 * np.random.default_rng(0).standard_normal(1000)
    assert checks(diagnose_curve(curve)) == []


@pytest.mark.parametrize("noise", [0.0, 0.05, 0.2])
def test_diverging_names_the_rise(noise: float, families) -> None:
    curve, start = families.diverging(1000, noise, seed=1)
    report = diagnose_curve(curve)
    assert checks(report) == ["loss.diverging"]
    e = report.get("loss.diverging").evidence
    assert start - 60 <= e["start_step"] <= start + 40
    assert e["end_step"] == 999 and e["final_level"] > 10 * e["best_level"]
    assert e["best_step"] < e["crossing_step"]


def test_diverging_from_the_first_step() -> None:
    t = np.arange(500)
    curve = 2.3 * np.exp(t / 150) * (1 + 0.05 * np.random.default_rng(2).standard_normal(500))
    assert checks(diagnose_curve(curve)) == ["loss.diverging"]


@pytest.mark.parametrize("periods", [3, 8, 25])
def test_oscillation_without_trend(periods: int, families) -> None:
    report = diagnose_curve(families.oscillating(2000, periods=periods))
    assert checks(report) == ["loss.oscillating"]
    e = report.get("loss.oscillating").evidence
    assert e["period_steps"] == pytest.approx(2000 / periods, rel=0.15)
    assert e["swing"] == pytest.approx(1.0, rel=0.3)  # peak to peak of a 0.5-amplitude sine


@pytest.mark.parametrize("periods", [3.25, 4.5, 6.25, 10.25])  # x.25 periods end on a peak
@pytest.mark.parametrize("amplitude", [0.3, 0.6])
def test_fall_then_oscillation_ending_high_is_not_divergence(periods: float, amplitude: float) -> None:
    t = np.arange(1000)
    swings = 1.2 + amplitude * np.sin(2 * np.pi * periods * (t - 200) / 800)
    curve = np.where(t < 200, 2.3 - 1.1 * t / 200, swings) + 0.05 * np.random.default_rng(4).standard_normal(1000)
    report = diagnose_curve(curve)
    assert checks(report) == ["loss.oscillating"]
    e = report.get("loss.oscillating").evidence
    assert e["period_steps"] == pytest.approx(800 / periods, rel=0.15)
    # the start is known to about a period: the trend window there still holds the fall
    assert abs(e["start_step"] - 200) <= 1.5 * 800 / periods and e["end_step"] >= 1000 - 800 / periods


def test_oscillation_riding_a_falling_trend_is_not_flagged(families) -> None:
    t = np.arange(2000)
    # a cyclic learning rate on a loss that falls to the end; once the loss is flat, such swings
    # are an oscillation without a trend and are reported
    curve = families.healthy(2000, 0.02, tau=0.4) + 0.05 * np.sin(2 * np.pi * t / 200)
    assert checks(diagnose_curve(curve)) == []
    flat_tail = families.healthy(2000, 0.02, tau=0.1) + 0.05 * np.sin(2 * np.pi * t / 200)
    assert checks(diagnose_curve(flat_tail)) == ["loss.oscillating"]


def test_collapse_with_recurring_spikes(families) -> None:
    curve = families.collapsed(1000, spikes=6)
    report = diagnose_curve(curve)
    assert checks(report) == ["loss.collapsed"]
    c = report.get("loss.collapsed")
    assert c.severity is Severity.WARNING and c.lesson == 6
    second_half = curve[500:] > 0.05  # oracle: distinct runs of spike points (neighbours merge)
    planted = int(second_half[0]) + int(np.sum(np.diff(second_half.astype(int)) == 1))
    assert c.evidence["orders_of_magnitude"] > 3 and c.evidence["spikes"] == planted >= 4
    assert 500 <= c.evidence["first_spike_step"] < 1000


def test_collapse_without_spikes_is_just_convergence(families) -> None:
    assert checks(diagnose_curve(families.collapsed(1000, spikes=0))) == []


def test_nan_midway_reports_the_exact_step_and_judges_the_prefix(families) -> None:
    curve = families.healthy(1000, 0.05)
    curve[637] = np.nan
    curve[700:] = np.inf
    report = diagnose_curve(curve, steps=np.arange(1000) * 4)
    assert checks(report) == ["loss.nonfinite"]
    e = report.get("loss.nonfinite").evidence
    assert (e["first_step"], e["nonfinite_count"], e["nan_count"], e["first_value"]) == (4 * 637, 301, 1, "NaN")
    assert report.meta["judged_points"] == 637


def test_diverging_then_nan_gives_both(families) -> None:
    curve, _ = families.diverging(1000, 0.05)
    curve[900:] = np.nan
    assert sorted(checks(diagnose_curve(curve))) == ["loss.diverging", "loss.nonfinite"]


@pytest.mark.parametrize("family, args", [
    ("healthy", (1000, 0.05)), ("flat", (500,)), ("diverging", (1000, 0.05)),
    ("plateau_then_fall", (1000, 0.4)), ("oscillating", (1000,)),
])
def test_max_mode_mirrors_min_mode(family: str, args: tuple, families) -> None:
    curve = getattr(families, family)(*args)
    curve = curve[0] if isinstance(curve, tuple) else curve
    as_loss = diagnose_curve(curve)
    as_score = diagnose_curve(-curve, name="accuracy", mode="max")
    assert checks(as_score) == [c for c in checks(as_loss) if c != "loss.collapsed"]
    for a, b in zip(as_loss.findings, as_score.findings, strict=False):
        assert (a.evidence["start_step"], a.evidence["end_step"]) == (b.evidence["start_step"], b.evidence["end_step"])
        assert b.evidence["metric"] == "accuracy" and b.evidence["mode"] == "max"


@pytest.mark.parametrize("accuracy, expected", [
    (lambda t: 0.98 - 0.88 * np.exp(-t / 150), []),
    (lambda t: 0.1 + 0.0 * t, ["loss.stuck"]),
    (lambda t: np.where(t < 300, 0.1, 0.95 - 0.85 * np.exp(-(t - 300) / 80.0)), ["loss.plateau"]),
    (lambda t: np.where(t < 500, 0.9, 0.9 - 0.7 * (1 - np.exp(-(t - 500) / 50.0))), ["loss.diverging"]),
])
def test_accuracy_curves_in_max_mode(accuracy, expected: list[str]) -> None:
    t = np.arange(1000)
    curve = accuracy(t) + 0.01 * np.random.default_rng(0).standard_normal(1000)
    assert checks(diagnose_curve(curve, name="accuracy", mode="max")) == expected


def test_report_figure_table_and_plain_evidence(families) -> None:
    curve, _ = families.plateau_then_fall(5000, 0.3)
    curve[4000] = np.nan
    report = diagnose_curve(curve, name="train/loss")
    assert report.title == "Curve diagnosis: train/loss"
    figure = report.figure("curve")
    assert [s.label for s in figure.series] == ["train/loss (median of 2-point bins)", "train/loss (smoothed)"]
    assert len(figure.series[0].x) == 500 and figure.series[0].x[0] == 0.5  # every 4th of the 2,000 bins
    assert {(s.label, s.severity) for s in figure.spans} == {("loss.plateau", Severity.INFO),
                                                             ("loss.nonfinite", Severity.ERROR)}
    assert figure.markers == ((4000, "loss.nonfinite"),)
    assert report.table("curve segments").column("check") == ["loss.nonfinite", "loss.plateau"]
    for finding in report.findings:
        assert finding.evidence["metric"] == "train/loss"
        for value in finding.evidence.values():
            assert type(value) in (int, float, str)
    assert json.loads(report.to_json())["findings"][1]["check"] == "loss.plateau"


def test_list_tuple_and_tensor_inputs_agree(families) -> None:
    torch = pytest.importorskip("torch")
    curve = families.flat(100)
    expected = checks(diagnose_curve(curve))
    assert checks(diagnose_curve(curve.tolist())) == expected
    assert checks(diagnose_curve(tuple(curve))) == expected
    assert checks(diagnose_curve(torch.tensor(curve, requires_grad=True))) == expected
    for half in (torch.bfloat16, torch.float16):  # losses logged under autocast (crash C3 of the fuzzer)
        assert checks(diagnose_curve(torch.tensor(curve, dtype=half))) == expected


@pytest.mark.parametrize("values, message", [
    ("abc", "values must be a 1-D sequence of numbers; got str."),
    (None, "values must be a 1-D sequence of numbers; got NoneType."),
    (np.zeros((3, 4)), "values must be 1-D (one value per step); got shape (3, 4)."),
    (np.zeros((1, 4)), "values must be 1-D (one value per step); got shape (1, 4). Flatten it with np.ravel(...)"),
    (3.0, "values must be 1-D (one value per step); got shape ()."),
    (["a", "b"], "values must be real numbers; got an array of dtype <U1 (first item: np.str_('a'))."),
    ([1.0, None], "values must be real numbers; got an array of dtype object (first item: 1.0)."),
    (np.array([1 + 2j]), "values must be real numbers; got an array of dtype complex128"),
])
def test_bad_values_raise_input_error(values, message: str) -> None:
    with pytest.raises(InputError) as info:
        diagnose_curve(values)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("steps, message", [
    ([0, 1], "steps must have one entry per value; got 2 steps for 3 values."),
    ([0, 2, 1], "steps must be non-decreasing; got step 1 after 2 at position 2. Sort the curve by step first."),
    ([0.0, np.nan, 2.0], "steps must be finite; got nan at position 1."),
])
def test_bad_steps_raise_input_error(steps, message: str) -> None:
    with pytest.raises(InputError, match=None) as info:
        diagnose_curve([1.0, 2.0, 3.0], steps)
    assert str(info.value) == message


def test_bad_mode_lists_the_allowed_values() -> None:
    with pytest.raises(ConfigError, match=r"mode must be one of \['min', 'max'\]"):
        diagnose_curve([1.0, 2.0], mode="minimum")  # type: ignore[arg-type]


def test_short_curve_is_stuck_only_within_its_noise() -> None:
    rng = np.random.default_rng(0)
    falling = 2.3 - 0.012 * np.arange(10) + 0.002 * rng.standard_normal(10)  # 5% fall, far beyond the noise
    assert checks(diagnose_curve(falling)) == []
    assert checks(diagnose_curve(2.3 + 0.01 * rng.standard_normal(10))) == ["loss.stuck"]


@pytest.mark.parametrize("n", [0, 1, 2, 7])
def test_short_curves_are_not_judged_and_say_so(n: int) -> None:
    report = diagnose_curve(np.full(n, 1.0))
    assert checks(report) == ["curve.too_short"] and report.meta["judged"] is False
    short = report.get("curve.too_short")
    assert short.severity is Severity.INFO and (short.evidence["points"], short.evidence["min_points"]) == (n, 8)
    assert report.meta["min_points"] == 8 and "not judged" in short.message


def test_eight_points_are_judged() -> None:
    report = diagnose_curve(np.linspace(2.3, 1.0, 8))
    assert report.meta["judged"] is True and not report.has("curve.too_short")


def test_nan_before_eight_points_says_the_prefix_is_too_short() -> None:
    report = diagnose_curve([2.3, 2.2, np.nan, 2.0])
    assert checks(report) == ["loss.nonfinite"]
    assert "too few to judge" in report.get("loss.nonfinite").message


@pytest.mark.slow
def test_real_digits_training_loss_is_silent(trained_digits) -> None:
    _, history = trained_digits
    report = diagnose_curve(history.losses, history.steps)
    assert report.filter(min_severity="warning") == ()
    assert not report.has("loss.plateau")
    # a monitor re-judges the growing history: no prefix of a healthy run is an alarm either
    for k in range(8, len(history.losses), 4):
        assert diagnose_curve(history.losses[:k]).filter(min_severity="warning") == (), k


@pytest.mark.slow
def test_real_digits_with_learning_rate_zero_is_stuck(digits) -> None:
    import torch

    from dldebug.demo.digits import DigitsCNN, DigitsData, train_digits

    torch.manual_seed(0)
    subset = DigitsData(digits.x_train[:320], digits.y_train[:320], digits.x_test, digits.y_test)
    history = train_digits(DigitsCNN(width=4), subset, epochs=4, lr=0.0, batch_size=32)
    assert len(history.losses) == 40
    assert checks(diagnose_curve(history.losses, history.steps)) == ["loss.stuck"]


# ---- loss.stuck is an error only where the curve cannot be a healthy one ----------------------------------


def test_a_slow_steady_fall_is_info_not_a_stuck_error() -> None:
    # a short run at a small learning rate (the tiny ViT at lr 1e-4 for 150 HF steps): a fall far inside the
    # noise band, but steady over 150 points
    rng = np.random.default_rng(0)
    slow = 2.31 - 0.00015 * np.arange(150) + 0.02 * rng.standard_normal(150)  # t of the slope about -4
    stuck = diagnose_curve(slow).get("loss.stuck")
    assert stuck is not None and stuck.severity.value == "info" and stuck.evidence["trend_t"] < -3
    assert "steadily" in stuck.message and "may only look stuck" in stuck.message


def test_a_long_flat_run_stays_an_error_and_lr_zero_is_named() -> None:
    rng = np.random.default_rng(1)
    flat = 2.3 + 0.02 * rng.standard_normal(150)
    assert diagnose_curve(flat).get("loss.stuck").severity.value == "error"
    short_at_zero = diagnose_curve(flat[:20], lr=np.zeros(20)).get("loss.stuck")
    assert short_at_zero.severity.value == "error" and "learning rate was 0" in short_at_zero.message


def test_an_epoch_level_metric_that_converged_before_its_first_point_is_info() -> None:
    val_acc = [0.838, 0.852, 0.865, 0.889, 0.886, 0.899, 0.879, 0.882, 0.872, 0.896, 0.892, 0.909]
    stuck = diagnose_curve(val_acc, name="val_acc", mode="max").get("loss.stuck")
    assert stuck is not None and stuck.severity.value == "info"  # steadily rising (t 3.8), and only 12 points
    assert not diagnose_curve(val_acc, name="val_acc", mode="max").filter(min_severity="warning")


def test_a_short_flat_epoch_log_is_info_and_says_why() -> None:
    rng = np.random.default_rng(2)
    stuck = diagnose_curve(0.44 + 0.04 * rng.standard_normal(15), name="val_loss").get("loss.stuck")
    assert stuck is not None and stuck.severity.value == "info" and "15 points" in stuck.message


def test_a_blowup_that_comes_back_only_to_its_start_is_an_error() -> None:
    # HF DistilBERT at AdamW lr 1.0: 0.69 -> 217 -> 951 in four steps, then chance level (0.69) to the end
    rng = np.random.default_rng(3)
    losses = np.concatenate([[0.69, 0.7, 217.0, 400.0, 951.0, 300.0, 40.0, 5.0],
                             0.69 + 0.02 * rng.standard_normal(142)])
    blowup = diagnose_curve(losses).get("loss.blowup")
    assert blowup is not None and blowup.severity.value == "error"
    assert "never trained below its start" in blowup.message
    trained = np.concatenate([losses[:8], 0.69 * np.exp(-np.arange(142) / 40) + 0.02])  # trains after the jump
    assert not diagnose_curve(trained).has("loss.blowup")
