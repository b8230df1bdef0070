"""Benchmark: the cost of ``probe_equivariance`` in forward passes and in time, against one forward pass.

Model: a ~20-layer CNN (9 Conv-ReLU pairs, 2 max-pools, a 1x1 output conv: 21 leaf layers) on a
batch of 8 RGB images at 64x64. The probe must cost at most (transforms x shifts + 1) forward
passes; it runs one pass for the input plus one per probe (``translate`` per shift, ``hflip`` and
``rot90`` once each). Passes are counted with a forward pre-hook on the first layer; times are the median
of N repeats, measured side by side in one run.

Run: ``.venv/bin/python benchmarks/bench_equivariance.py [--repeats 7] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from dldebug import probe_equivariance


def build_cnn() -> nn.Sequential:
    """9 Conv-ReLU pairs with two 2x2 max-pools and a 1x1 output convolution: 21 leaf layers."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    channels = 3
    for index in range(9):
        width = 32 if index < 3 else 64
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        channels = width
        if index in (2, 5):
            layers.append(nn.MaxPool2d(2))
    layers.append(nn.Conv2d(channels, 8, 1))
    return nn.Sequential(*layers).eval()


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build_cnn()
    x = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    n_leaves = sum(1 for m in model.modules() if next(m.children(), None) is None)
    passes: list[int] = []
    model[0].register_forward_pre_hook(lambda *_: passes.append(1))  # the first layer runs once per pass

    def forward() -> None:
        with torch.no_grad():
            model(x)

    t_forward = median_seconds(forward, args.repeats)
    configs = [(("translate", "hflip", "rot90"), (1, 2, 4), "dense"),
               (("translate", "hflip", "rot90"), (1, 2, 4), "classification"),
               (("translate",), (1, 2, 4, 8), "dense")]
    print(f"CNN: {n_leaves} leaf layers, input {tuple(x.shape)}, {args.threads} thread(s), "
          f"median of {args.repeats}; one forward pass: {t_forward * 1e3:.1f} ms\n")
    print("| transforms | shifts | task | bound (T x S + 1) | forward passes | time (ms) | time / 1 forward "
          "| time / (passes x forward) |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for transforms, shifts, task in configs:
        passes.clear()
        probe_equivariance(model, x, transforms=transforms, shifts=shifts, task=task)  # type: ignore[arg-type]
        counted = len(passes)
        seconds = median_seconds(
            lambda t=transforms, s=shifts, k=task: probe_equivariance(model, x, transforms=t, shifts=s, task=k),
            args.repeats)
        bound = len(transforms) * len(shifts) + 1
        print(f"| {', '.join(transforms)} | {shifts} | {task} | {bound} | {counted} | {seconds * 1e3:.1f} | "
              f"{seconds / t_forward:.2f} | {seconds / (counted * t_forward):.2f} |")


if __name__ == "__main__":
    main()
