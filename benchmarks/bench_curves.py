"""Benchmark diagnose_curve: speed on long curves, false alarms on healthy runs, plateau onset error.

Run: .venv/bin/python benchmarks/bench_curves.py
Speed is reported next to np.sort of the same array, measured side by side in one run,
so the ratio says more than the absolute time on a shared machine.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "curves"))
from conftest import collapsed, diverging, flat, healthy, oscillating, plateau_then_fall
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


if __name__ == "__main__":
    speed()
    quality()
    detection_rates()
