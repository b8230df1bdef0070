"""Locally connected layers, forward+backward on CPU, side by side (issue 5, lesson 5).

At DeepFace's three locally connected shapes (L4, L5, L6) and batch 4 and 32, times one training step
(forward, then backward of a random output gradient) and the peak extra resident memory of:

* dldebug: ``dldebug.nn.LocallyConnected2d`` (eager on CPU: the fused band-wise autograd Function;
  traced: unfold views + one location-batched GEMM);
* naive: a Python loop over output locations, one small einsum each (the definition);
* broadcast: ``F.unfold`` then a ``B x Cout x K x L`` broadcast multiply and sum (popular third-party form);
* tf_keras implementation 1, 2, 3 (``tf.function`` train step; skipped with a note where they do not fit);
* conv2d: ``nn.Conv2d`` of the same shape (same FLOPs, shared weights: a lower bound nobody can reach);
* floor: the weight-streaming floor: read the weight (forward), read it again and write a fresh
  weight-sized gradient (backward).

Run:  .venv/bin/python benchmarks/bench_locally_connected.py [--quick] [--threads N] [--full-keras]

Peak memory: for PyTorch methods, the peak bytes held by PyTorch's CPU allocator during one step above the
level before it (profiler memory events); for TensorFlow, the growth of resident memory.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dldebug.nn import LocallyConnected2d

SHAPES = {  # name: (in_channels, out_channels, input size, kernel, stride)
    "L4": (16, 16, 63, 9, 1),
    "L5": (16, 16, 55, 7, 2),
    "L6": (16, 16, 25, 5, 1),
}
BROADCAST_LIMIT = 3 * 2**30  # bytes of the B x Cout x K x L product we are willing to allocate
KERAS_DENSE_LIMIT = 2**30  # bytes of implementation 2's dense kernel
NAIVE_ROWS = 6  # the naive loop is timed on this many output rows and scaled (its cost is linear in rows)
KERAS_SPARSE_LIMIT = 200_000  # implementation 3 builds kernel_idxs in a Python loop per weight
KERAS_TRACE_LIMIT = 1000  # output locations; implementation 1 traces one slice per location (L4: ~4 min)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_extra_memory(fn: Callable[[], object]) -> int:
    """Peak resident memory above the level before ``fn``, sampled every millisecond (used for TensorFlow)."""
    gc.collect()
    base, peak, done = rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.001)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return max(0, max(peak[0], rss_bytes()) - base)


def peak_torch_memory(fn: Callable[[], object]) -> int:
    """Peak bytes held by PyTorch's CPU allocator during ``fn`` above the level before it (profiler events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    level = peak = 0
    for _, nbytes in events:
        level += nbytes
        peak = max(peak, level)
    return peak


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best of ``repeats`` runs after a warm-up; fast methods repeat up to 30 times within 1 s.

    Slow methods (``repeats=1``) are timed once, cold: their seconds dwarf warm-up effects.
    """
    if repeats > 1:
        fn()
    times: list[float] = []
    while len(times) < repeats or (repeats > 1 and sum(times) < 1.0 and len(times) < 30):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@dataclass
class Case:
    name: str
    batch: int
    c_in: int
    c_out: int
    size: int
    kernel: int
    stride: int

    @property
    def out(self) -> int:
        return (self.size - self.kernel) // self.stride + 1

    @property
    def weight_numel(self) -> int:
        return self.out**2 * self.c_out * self.c_in * self.kernel**2


def torch_step(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
               params: list[torch.Tensor]) -> Callable[[], object]:
    grad_out: list[torch.Tensor] = []

    def step() -> None:
        for p in (x, *params):
            p.grad = None
        y = forward(x)
        if not grad_out:
            grad_out.append(torch.randn_like(y))
        y.backward(grad_out[0])
    return step


def naive_forward(layer: LocallyConnected2d, rows: int) -> Callable[[torch.Tensor], torch.Tensor]:
    k, s = layer.kernel_size[0], layer.stride[0]
    out_w = layer.output_size[1]

    def forward(x: torch.Tensor) -> torch.Tensor:
        # unbind once: indexing weight[i, j] per location would add a weight-sized gradient per location.
        kernels = layer.weight[:rows].reshape(rows * out_w, *layer.weight.shape[2:]).unbind(0)
        out = torch.stack([torch.stack([torch.einsum("bcuv,ocuv->bo", x[:, :, i * s:i * s + k, j * s:j * s + k],
                                                     kernels[i * out_w + j]) for j in range(out_w)], -1)
                           for i in range(rows)], -2)
        return out + layer.bias[:, :rows]
    return forward


def broadcast_forward(layer: LocallyConnected2d) -> Callable[[torch.Tensor], torch.Tensor]:
    out_h, out_w, c_out = layer.weight.shape[:3]

    def forward(x: torch.Tensor) -> torch.Tensor:
        patches = F.unfold(x, layer.kernel_size, stride=layer.stride)  # B, K, L
        weight = layer.weight.reshape(out_h * out_w, c_out, -1).permute(1, 2, 0)  # Cout, K, L
        out = (patches.unsqueeze(1) * weight.unsqueeze(0)).sum(2)
        return out.reshape(x.shape[0], c_out, out_h, out_w) + layer.bias
    return forward


def keras_step(case: Case, implementation: int, layer: LocallyConnected2d) -> tuple[Callable[[], object], float]:
    import tensorflow as tf

    start = time.perf_counter()
    keras_layer = layer.to_keras(implementation=implementation)
    build = time.perf_counter() - start
    x = tf.random.normal((case.batch, case.size, case.size, case.c_in))
    grad_out = tf.random.normal((case.batch, case.out, case.out, case.c_out))

    @tf.function
    def step() -> object:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = keras_layer(x)
        return tape.gradient(y, [x, *keras_layer.trainable_weights], output_gradients=grad_out)
    return step, build


def floor_step(numel: int) -> Callable[[], object]:
    weight = torch.randn(numel)

    def step() -> None:
        weight.sum()  # forward: read the weight once
        torch.mul(weight, 2.0)  # backward: read it again, write a fresh weight-sized gradient
    return step


def measure_case(case: Case, repeats: int, with_keras: bool, full_keras: bool) -> list[dict]:
    torch.manual_seed(0)
    layer = LocallyConnected2d(case.c_in, case.c_out, case.size, case.kernel, stride=case.stride)
    conv = torch.nn.Conv2d(case.c_in, case.c_out, case.kernel, stride=case.stride)
    x = torch.randn(case.batch, case.c_in, case.size, case.size, requires_grad=True)
    params = list(layer.parameters())
    rows: list[dict] = []

    def run(name: str, step: Callable[[], object], reps: int, note: str = "", scale: float = 1.0) -> None:
        print(f"  {case.name} batch {case.batch}: {name} ...", file=sys.stderr, flush=True)
        seconds = best_time(step, reps)
        rows.append({"method": name, "ms": seconds * 1e3 * scale, "peak_mb": peak_torch_memory(step) / 2**20,
                     "note": note})

    run("floor", floor_step(case.weight_numel), repeats)
    run("dldebug", torch_step(layer, x, params), repeats)
    run("conv2d", torch_step(conv, x, list(conv.parameters())), repeats)
    naive_rows = min(case.out, NAIVE_ROWS)
    run("naive loop", torch_step(naive_forward(layer, naive_rows), x, params), 1, scale=case.out / naive_rows,
        note="" if naive_rows == case.out else f"timed on {naive_rows} of {case.out} output rows, scaled; "
        "peak for those rows only")
    product = case.batch * case.c_out * case.c_in * case.kernel**2 * case.out**2 * 4
    if product <= BROADCAST_LIMIT:
        run("broadcast", torch_step(broadcast_forward(layer), x, params), 1)
    else:
        rows.append({"method": "broadcast", "note": f"skipped: {product / 2**30:.1f} GiB product"})
    if with_keras:
        rows += keras_rows(case, layer, repeats, full_keras)
    return rows


def keras_rows(case: Case, layer: LocallyConnected2d, repeats: int, full: bool) -> list[dict]:
    rows: list[dict] = []
    dense = case.size**2 * case.c_in * case.out**2 * case.c_out * 4
    for implementation in (1, 2, 3):
        name = f"tf_keras impl {implementation}"
        if implementation == 2 and dense > KERAS_DENSE_LIMIT:
            rows.append({"method": name, "note": f"skipped: dense kernel {dense / 2**30:.1f} GiB"})
            continue
        if implementation == 1 and case.out**2 > KERAS_TRACE_LIMIT and not full:
            rows.append({"method": name, "note": f"skipped: tracing {case.out**2} slices takes minutes "
                                                 "(run with --full-keras)"})
            continue
        if implementation == 3 and case.weight_numel > KERAS_SPARSE_LIMIT:
            rows.append({"method": name, "note": f"skipped: kernel_idxs built by a Python loop over "
                                                 f"{case.weight_numel / 1e6:.1f} M weights"})
            continue
        step, build = keras_step(case, implementation, layer)
        start = time.perf_counter()
        step()
        trace = time.perf_counter() - start
        seconds = best_time(step, repeats if implementation != 1 else 1)
        rows.append({"method": name, "ms": seconds * 1e3, "peak_mb": peak_extra_memory(step) / 2**20,
                     "note": f"build {build:.1f} s, trace {trace:.1f} s; peak is RSS growth (TF's allocator "
                             "keeps its pool, so 0 means no growth)"})
    return rows


def print_table(case: Case, rows: list[dict]) -> None:
    timed = {r["method"]: r["ms"] for r in rows if "ms" in r}
    keras = [v for k, v in timed.items() if k.startswith("tf_keras")]
    print(f"\n### {case.name} batch {case.batch}: {case.c_in}->{case.c_out} @ {case.size}x{case.size}, "
          f"k{case.kernel} s{case.stride}, {case.weight_numel / 1e6:.1f} M weights "
          f"({case.weight_numel * 4 / 2**20:.0f} MiB)\n")
    print("| method | fwd+bwd ms | x floor | dldebug speed-up | peak extra MiB* | note |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        if "ms" not in r:
            print(f"| {r['method']} | - | - | - | - | {r['note']} |")
            continue
        print(f"| {r['method']} | {r['ms']:.1f} | {r['ms'] / timed['floor']:.1f} | "
              f"{r['ms'] / timed['dldebug']:.1f} | {r['peak_mb']:.0f} | {r['note']} |")
    goals = [f"{timed['naive loop'] / timed['dldebug']:.1f}x faster than the naive loop (goal >= 10x)",
             f"{timed['dldebug'] / timed['floor']:.1f}x the weight-streaming floor"
             + (" (goal <= 5x at batch 4)" if case.batch == 4 else "")]
    if keras:
        goals.append(f"{min(keras) / timed['dldebug']:.2f}x faster than the best tf_keras (goal >= 1.5x)")
    print("\n" + "; ".join(goals) + ".", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="L6 only, no Keras")
    parser.add_argument("--no-keras", action="store_true")
    parser.add_argument("--full-keras", action="store_true", help="also trace Keras implementation 1 at L4")
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        if not (args.quick or args.no_keras):
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    shapes = {"L6": SHAPES["L6"]} if args.quick else SHAPES
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    start = time.perf_counter()
    for batch in args.batches:
        for name, (c_in, c_out, size, kernel, stride) in shapes.items():
            case = Case(name, batch, c_in, c_out, size, kernel, stride)
            print_table(case, measure_case(case, args.repeats, not (args.quick or args.no_keras), args.full_keras))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
