"""Benchmark diagnose_curve: speed on long curves, false alarms on healthy runs, plateau onset error,
early blow-ups (issue 14) and mid-run plateaus.

Run: .venv/bin/python benchmarks/bench_curves.py [--quick]
Speed is reported next to np.sort of the same array, measured side by side in one run,
so the ratio says more than the absolute time on a shared machine. The synthetic families come
from tests/curves/conftest.py (their definitions are in the docstrings there); every run is seeded.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "curves"))
from conftest import (
    collapsed,
    diverging,
    early_blowup,
    flat,
    healthy,
    midrun_plateau,
    oscillating,
    plateau_then_fall,
    warmup_healthy,
)
from dldebug.curves import diagnose_curve


def best_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def speed() -> None:
    print("| curve | points | diagnose_curve (s) | np.sort same array (s) | ratio | findings |")
    print("|---|---:|---:|---:|---:|---|")
    for label, build in [("healthy", lambda n: healthy(n, 0.05)), ("plateau", lambda n: plateau_then_fall(n)[0]),
                         ("oscillating", lambda n: oscillating(n, periods=8)),
                         ("NaN at 60%", lambda n: np.where(np.arange(n) < 0.6 * n, healthy(n, 0.05), np.nan))]:
        for n in (10_000, 100_000, 1_000_000):
            values = build(n)
            diagnose_curve(values[:1000])  # warm-up (imports, caches)
            t_diag = best_of(lambda v=values: diagnose_curve(v))
            t_sort = best_of(lambda v=values: np.sort(v))
            checks = ", ".join(f.check for f in diagnose_curve(values).findings) or "-"
            print(f"| {label} | {n:,} | {t_diag:.3f} | {t_sort:.3f} | {t_diag / t_sort:.1f} | {checks} |")


def quality() -> None:
    rng = np.random.default_rng(123)
    alarms, runs = 0, 300
    for seed in range(runs):
        n = int(rng.integers(50, 20_000))
        noise = float(rng.uniform(0.0, 0.3))
        tau = float(rng.uniform(0.05, 0.4))
        report = diagnose_curve(healthy(n, noise, float(10 ** rng.uniform(-4, 4)), seed=seed, tau=tau))
        alarms += bool(report.filter(min_severity="warning"))
    print(f"\nHealthy decays (random length 50-20,000, noise 0-30%, tau 5-40% of the run, scale 1e-4..1e4): "
          f"{alarms} of {runs} raised a warning or error.")
    errors, missed = [], 0
    for seed in range(200):
        onset = float(rng.uniform(0.12, 0.8))
        noise = float(rng.uniform(0.005, 0.08))
        curve, start = plateau_then_fall(int(rng.integers(300, 20_000)), onset, noise, seed=seed)
        plateau = diagnose_curve(curve).get("loss.plateau")
        if plateau is None:
            missed += 1
            continue
        errors.append(abs(plateau.evidence["end_step"] - start) / start)
    err = np.array(errors)
    print(f"Plateau-then-fall (onset 12-80% of the run, noise 0.5-8% of the level): {missed} of 200 missed; "
          f"end_step error relative to the true onset: median {np.median(err):.2%}, 95th percentile "
          f"{np.percentile(err, 95):.2%}, max {err.max():.2%}.")


def detection_rates() -> None:
    rng = np.random.default_rng(7)
    cases = {
        "stuck (flat at 2.3, noise sd 0-0.1)": ("loss.stuck", lambda s: flat(int(rng.integers(20, 20_000)),
                                                                  noise=float(rng.uniform(0, 0.1)), seed=s)),
        "diverging (rise from 30-80%, noise 0-20%)": ("loss.diverging", lambda s: diverging(
            int(rng.integers(200, 20_000)), float(rng.uniform(0, 0.2)), seed=s, onset=float(rng.uniform(0.3, 0.8)))[0]),
        "oscillating (3-30 periods, amplitude 0.2-0.6 on 1.2, noise 5%)": ("loss.oscillating", lambda s: oscillating(
            int(rng.integers(300, 20_000)), float(rng.uniform(3, 30)), float(rng.uniform(0.2, 0.6)), 0.05, seed=s)),
        "collapsed (to 1e-4, 3-10 spikes)": ("loss.collapsed", lambda s: collapsed(
            int(rng.integers(300, 20_000)), int(rng.integers(3, 11)), seed=s)),
    }
    print("\n| family (100 random curves each) | expected | detected | other warnings/errors |")
    print("|---|---|---:|---:|")
    for label, (expected, build) in cases.items():
        hits = others = 0
        for seed in range(100):
            report = diagnose_curve(build(seed))
            hits += report.has(expected)
            others += any(f.check != expected for f in report.filter(min_severity="warning"))
        print(f"| {label} | {expected} | {hits}/100 | {others}/100 |")


def blowups(runs: int = 1000) -> None:
    """Issue 14: early blow-ups (jump 5-1e6x at 1-5% of the run, then settle/decay/oscillate) must be found."""
    rng = np.random.default_rng(14)
    found: dict[str, list[int]] = {"settle": [0, 0], "decay": [0, 0], "oscillate": [0, 0]}
    errors, severities, jump_errors = 0, {"error": 0, "warning": 0}, []
    for seed in range(runs):
        after = ("settle", "decay", "oscillate")[seed % 3]
        n = int(rng.integers(100, 20_000))
        factor = float(10 ** rng.uniform(np.log10(5), 6))
        curve, jump = early_blowup(n, factor, float(rng.uniform(0.01, 0.05)), after, float(rng.uniform(0, 0.3)),
                                   seed=seed, scale=float(10 ** rng.uniform(-3, 3)))
        report = diagnose_curve(curve)
        blowup = report.get("loss.blowup")
        found[after][1] += 1
        if blowup is not None:
            found[after][0] += 1
            severities[blowup.severity.value] += 1
            jump_errors.append(abs(blowup.evidence["jump_step"] - jump) / n)
        errors += any(f.check != "loss.blowup" for f in report.filter(min_severity="warning"))
    total = sum(hit for hit, _ in found.values())
    print(f"\nEarly blow-ups ({runs} runs: length 100-20,000, jump 5-1e6x at 1-5% of the run, noise 0-30%, "
          f"scale 1e-3..1e3): {total}/{runs} = {total / runs:.1%} found as loss.blowup "
          f"({severities['error']} error, {severities['warning']} warning); other warnings/errors in {errors} runs; "
          f"jump step error: max {max(jump_errors, default=0):.2%} of the run.")
    print("| after the jump | found |\n|---|---:|")
    for after, (hit, count) in found.items():
        print(f"| {after} | {hit}/{count} |")


def healthy_runs(runs: int = 1000) -> None:
    """Issue 14: healthy decays, with or without a warm-up bump of up to 3x, must raise no warning."""
    rng = np.random.default_rng(41)
    warnings, infos = 0, {}
    for seed in range(runs):
        n = int(rng.integers(50, 20_000))
        noise, tau = float(rng.uniform(0, 0.3)), float(rng.uniform(0.05, 0.4))
        scale = float(10 ** rng.uniform(-3, 3))
        spike = float(rng.uniform(1.0, 3.0))
        curve = (warmup_healthy(n, spike, noise, seed=seed, scale=scale, tau=tau) if seed % 2 else
                 healthy(n, noise, scale, seed=seed, tau=tau))
        report = diagnose_curve(curve)
        warnings += bool(report.filter(min_severity="warning"))
        for finding in report.findings:
            infos[finding.check] = infos.get(finding.check, 0) + 1
    detail = ", ".join(f"{check} in {count}" for check, count in sorted(infos.items())) or "none"
    print(f"\nHealthy runs ({runs}: length 50-20,000, noise 0-30%, tau 5-40% of the run, scale 1e-3..1e3; every "
          f"other one with a warm-up bump of 1-3x starting in its first 3%, rising over 0.5-3% of the run and falling "
          f"back over 1-5%): {warnings} raised a warning or error; "
          f"findings of any severity: {detail}.")


def midrun(runs: int = 1000, noise_range: tuple[float, float] = (0.0, 0.1)) -> None:
    """Issue 14: a flat stretch (onset 10-80% of the run) in a still-falling loss must be found, onset within 5%."""
    rng = np.random.default_rng(80 + int(100 * noise_range[1]))
    missed, onset_errors, end_errors, others = 0, [], [], 0
    for seed in range(runs):
        n = int(rng.integers(300, 20_000))
        onset = float(rng.uniform(0.1, 0.8))
        duration = float(rng.uniform(0.1, max(0.1, min(0.3, 0.92 - onset))))
        curve, begin, stop = midrun_plateau(n, onset, duration, float(rng.uniform(*noise_range)), seed=seed,
                                            tau=float(rng.uniform(0.3, 0.6)))
        report = diagnose_curve(curve)
        plateau = report.get("loss.plateau")
        others += any(f.check != "loss.plateau" for f in report.filter(min_severity="warning"))
        if plateau is None:
            missed += 1
            continue
        onset_errors.append(abs(plateau.evidence["start_step"] - begin) / n)
        end_errors.append(abs(plateau.evidence["end_step"] - (stop - 1)) / n)
    on, end = np.array(onset_errors), np.array(end_errors)
    within = int(np.sum(on <= 0.05))
    print(f"\nMid-run plateaus ({runs} runs: length 300-20,000, onset 10-80%, duration 10-30% of the run, noise "
          f"{noise_range[0]:.0%}-{noise_range[1]:.0%}, decay time constant 30-60% of the run): found "
          f"{runs - missed}/{runs} = {(runs - missed) / runs:.1%}; onset within 5% of the run in {within}/{runs} = "
          f"{within / runs:.1%}; onset error median {np.median(on):.2%}, 95th percentile {np.percentile(on, 95):.2%}, "
          f"max {on.max():.2%}; end error median {np.median(end):.2%}, max {end.max():.2%}; other warnings/errors "
          f"in {others} runs.")


def ten_million() -> None:
    """Issue 17: diagnose_curve on 10 million points (goal: under 10 s), next to np.sort of the same array."""
    print("\n| curve | points | diagnose_curve (s) | np.sort same array (s) | ratio | findings |")
    print("|---|---:|---:|---:|---:|---|")
    for label, values in [("healthy", healthy(10_000_000, 0.05)), ("mid-run plateau",
                                                                    midrun_plateau(10_000_000, 0.4, 0.2, 0.03)[0]),
                          ("early blow-up", early_blowup(10_000_000, 1e3, 0.02, "decay", 0.1)[0])]:
        t_diag = best_of(lambda v=values: diagnose_curve(v), repeat=3)
        t_sort = best_of(lambda v=values: np.sort(v), repeat=3)
        checks = ", ".join(f.check for f in diagnose_curve(values).findings) or "-"
        print(f"| {label} | {len(values):,} | {t_diag:.2f} | {t_sort:.2f} | {t_diag / t_sort:.1f} | {checks} |")


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    if not quick:
        ten_million()
        speed()
        quality()
        detection_rates()
    blowups(200 if quick else 1000)
    healthy_runs(200 if quick else 1000)
    midrun(200 if quick else 1000)
    midrun(200 if quick else 1000, (0.1, 0.3))
