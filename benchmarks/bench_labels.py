"""Benchmark: check_label_alignment on 1,000 classes x 50,000 predictions (goal: < 2 s).

Run: .venv/bin/python benchmarks/bench_labels.py [--repeats 3]

Each case is timed end to end (validation, argmax, confusion matrix, the full
assignment, the two held-out assignments, findings, figure and the 1,000-row
mapping table) next to the bare core (np.bincount + one
scipy.optimize.linear_sum_assignment) on the same data; the ratio is the
price of the significance test and the report.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from scipy.optimize import linear_sum_assignment

from dldebug import check_label_alignment

CLASSES, SAMPLES, GOAL_S = 1000, 50_000, 2.0


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _cases(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    labels = rng.integers(0, CLASSES, SAMPLES)
    permutation = rng.permutation(CLASSES)
    right = rng.random(SAMPLES) < 0.7
    permuted = np.where(right, permutation[labels], rng.integers(0, CLASSES, SAMPLES))
    aligned = np.where(right, labels, rng.integers(0, CLASSES, SAMPLES))
    noise = rng.integers(0, CLASSES, SAMPLES)
    logits = rng.standard_normal((SAMPLES, CLASSES), dtype=np.float32)
    logits[np.arange(SAMPLES), permuted] += 5.0
    return {
        "indices, 70% model, permuted": (permuted, labels, "labels.permuted"),
        "indices, 70% model, aligned": (aligned, labels, "(none)"),
        "indices, pure noise": (noise, labels, "labels.inconclusive"),
        "float32 logits (50,000 x 1,000), permuted": (logits, labels, "labels.permuted"),
    }


def _core(predictions: np.ndarray, labels: np.ndarray) -> None:
    predicted = predictions.argmax(1) if predictions.ndim == 2 else predictions
    confusion = np.bincount(labels * CLASSES + predicted, minlength=CLASSES * CLASSES).reshape(CLASSES, CLASSES)
    linear_sum_assignment(confusion, maximize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{CLASSES} classes x {SAMPLES:,} predictions; median of {args.repeats} runs; goal < {GOAL_S} s\n")
    print("| case | verdict | check_label_alignment (s) | core: bincount + 1 assignment (s) | ratio | "
          "share of 2 s goal |")
    print("|---|---|---|---|---|---|")
    for name, (predictions, labels, expected) in _cases(rng).items():
        result = check_label_alignment(predictions, labels)
        verdict = ", ".join(f.check for f in result.report) or "(none)"
        assert verdict == expected, (name, verdict)
        full = _median_time(lambda p=predictions, y=labels: check_label_alignment(p, y), args.repeats)
        core = _median_time(lambda p=predictions, y=labels: _core(p, y), args.repeats)
        print(f"| {name} | {verdict} | {full:.3f} | {core:.3f} | {full / core:.1f}x | {full / GOAL_S:.0%} |")


if __name__ == "__main__":
    main()
