"""TrainingMonitor overhead per training step, measured side by side in one run.

Three variants of the same training step (zero_grad, forward, loss, backward,
optimiser step) on identical copies of a model:

* baseline: no monitor;
* default: ``TrainingMonitor(model)`` (``every=20``) and ``observe(loss, logits=..., targets=...,
  batch_size=..., lr=...)`` on every step;
* layer stats: ``TrainingMonitor(model, layer_stats=True)``: per-layer output and gradient
  norms on every step (logit statistics stay on the ``every`` schedule).

Repetitions are interleaved (baseline, default, layer stats, in a rotating order)
so that contention from other processes hits all variants alike; each ratio is
the median over repetitions of (variant time / baseline time) in the same
repetition. Time is the process's CPU time (``time.process_time``), which, with
one torch thread, counts the work done and not the waiting for a busy CPU; the
wall-clock ratio is printed too. Goals (issue 3): default <= 1.03, layer stats <= 1.10.

Long runs (issue 17, ``--long``): 10 million ``observe`` calls (a float loss, the lr and the batch
size each step, no model) and the process's resident memory (RSS, from /proc/self/statm) before
and after 1 million and 10 million steps; the monitor's histories stay at ``capacity`` points.

Usage: python benchmarks/bench_monitor.py [--reps 31] [--threads 1] [--long [--steps 10000000]]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from dldebug.demo.digits import DigitsCNN, load_digits_data
from dldebug.monitor import TrainingMonitor


def mlp_10m() -> nn.Module:
    """784 -> 2048 -> 2048 -> 2048 -> 10: 10.0M parameters."""
    return nn.Sequential(nn.Linear(784, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(),
                         nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10))


def make_step(model: nn.Module, monitor: TrainingMonitor | None, x: torch.Tensor,
              y: torch.Tensor, observe_time: list[float]) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    lr = 1e-4

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        loss = loss_fn(logits, y)
        loss.backward()
        opt.step()
        if monitor is not None:
            start = time.process_time()
            monitor.observe(loss, logits=logits, targets=y, batch_size=len(y), lr=lr)
            observe_time[0] += time.process_time() - start

    return step


def bench(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, reps: int, steps: int) -> dict:
    variants = {
        "baseline": None,
        "default": lambda m: TrainingMonitor(m),
        "layer stats": lambda m: TrainingMonitor(m, layer_stats=True),
    }
    runners = {}
    observe_time = {label: [0.0] for label in variants}
    for label, factory in variants.items():
        copy_ = copy.deepcopy(model)
        runners[label] = make_step(copy_, None if factory is None else factory(copy_), x, y, observe_time[label])
    for run in runners.values():  # warm-up (allocator, first-call costs)
        for _ in range(3):
            run()
    times: dict[str, list[float]] = {label: [] for label in runners}
    walls: dict[str, list[float]] = {label: [] for label in runners}
    for spent in observe_time.values():
        spent[0] = 0.0
    labels = list(runners)
    for rep in range(reps):
        order = labels[rep % 3:] + labels[:rep % 3]
        for label in order:
            start, wall = time.process_time(), time.perf_counter()
            for _ in range(steps):
                runners[label]()
            times[label].append((time.process_time() - start) / steps)
            walls[label].append((time.perf_counter() - wall) / steps)
    base = times["baseline"]
    row: dict = {"workload": name, "params": sum(p.numel() for p in model.parameters()),
                 "batch": len(y), "baseline ms/step": 1e3 * statistics.median(base)}
    for label in ("default", "layer stats"):
        ratios = [t / b for t, b in zip(times[label], base, strict=True)]
        row[f"{label} ratio"] = statistics.median(ratios)
        row[f"{label} ratio IQR"] = _iqr(ratios)
        row[f"{label} wall ratio"] = statistics.median(
            t / b for t, b in zip(walls[label], walls["baseline"], strict=True))
        # The share of the step spent inside observe() (hooks only store references).
        row[f"{label} observe share"] = observe_time[label][0] / sum(times[label]) / steps
    return row


def _iqr(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4)
    return f"{q[0]:.3f}-{q[2]:.3f}"


def rss_mib() -> float:
    """Resident memory of this process now, in MiB."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def long_run(steps: int) -> None:
    """RSS before and after 1M and ``steps`` observe calls; the history sizes; the time per call."""
    monitor = TrainingMonitor(every=20)
    noise = 1 + 0.05 * torch.randn(4096, generator=torch.Generator().manual_seed(0)).numpy()
    checkpoints = sorted({1_000_000, steps})
    print(f"torch {torch.__version__}; TrainingMonitor(every=20), observe(loss, batch_size=64, lr=...) per step\n")
    print("| steps observed | RSS (MiB) | loss history points | stride | observe (us/call, since last row) |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| 0 | {rss_mib():.1f} | 0 | 1 | - |")
    done, clock = 0, time.perf_counter()
    for target in checkpoints:
        for step in range(done, target):
            monitor.observe(float(2.0 / (1.0 + 1e-5 * step) * noise[step % 4096]), batch_size=64, lr=1e-3)
        elapsed = time.perf_counter() - clock
        print(f"| {target:,} | {rss_mib():.1f} | {len(monitor.losses):,} | {monitor.losses.stride:,} | "
              f"{1e6 * elapsed / (target - done):.2f} |")
        done, clock = target, time.perf_counter()
    start = time.perf_counter()
    report = monitor.report()
    print(f"\nreport() after {done:,} steps: {time.perf_counter() - start:.3f} s; findings: "
          f"{[f.check for f in report.findings] or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=31)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU time sums all threads)")
    parser.add_argument("--long", action="store_true", help="the long-run memory benchmark instead")
    parser.add_argument("--steps", type=int, default=10_000_000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.long:
        long_run(args.steps)
        return
    data = load_digits_data()
    torch.manual_seed(0)
    rows = [bench("digits CNN (Adam)", DigitsCNN(), data.x_train[:64], data.y_train[:64], args.reps, 40)]
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 784, generator=gen), torch.randint(0, 10, (256,), generator=gen)
    torch.manual_seed(0)
    rows.append(bench("10M-parameter MLP (Adam)", mlp_10m(), x, y, max(5, args.reps // 2), 3))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.reps} interleaved repetitions\n")
    print("| workload | params | batch | baseline CPU ms/step | default: CPU ratio (IQR) | default: wall ratio "
          "| default: observe share | layer stats: CPU ratio (IQR) | layer stats: wall ratio "
          "| layer stats: observe share |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workload']} | {r['params']:,} | {r['batch']} | {r['baseline ms/step']:.2f} | "
              f"{r['default ratio']:.3f} ({r['default ratio IQR']}) | {r['default wall ratio']:.3f} | "
              f"{r['default observe share']:.2%} | {r['layer stats ratio']:.3f} ({r['layer stats ratio IQR']}) | "
              f"{r['layer stats wall ratio']:.3f} | {r['layer stats observe share']:.2%} |")


if __name__ == "__main__":
    main()
