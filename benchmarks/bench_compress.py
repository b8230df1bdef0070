"""Truncated-SVD compression of VGG-sized FC layers: measured speed-up vs theoretical, and compression time.

Run:  .venv/bin/python benchmarks/bench_compress.py [--repeats 5] [--randomized] [--exact-fc7]

1. Inference: dense ``nn.Linear`` vs the factor pair from ``lowrank_linear``-style
   factors, VGG fc6 (25088 -> 4096) and fc7 (4096 -> 4096), batch 1 and 64, ranks
   1024/512/256, timed side by side (interleaved samples of ~50 ms, the minimum of
   ``--repeats`` samples: the least-disturbed cost on a shared machine). The
   theoretical ratio is the MAC ratio ``m*n / (t*(m+n))``.
2. Compression: ``compress_linear_layers(fc6, rank=1024)`` end to end (method
   ``"auto"`` picks Gram + subspace iteration), with its accuracy: the
   reconstruction error against the optimum from the exact spectrum (float64
   Gram + ``eigvalsh``), the singular values against the exact ones, and the
   a-posteriori residual. ``--randomized`` also times ``torch.svd_lowrank``;
   ``--exact-fc7`` compares against a full ``torch.linalg.svd`` on fc7.

Inference weights are random (speed does not depend on them). The compressed
fc6 is Gaussian with power-law row/column scales (a decaying spectrum, like
trained layers); ``--flat`` adds a plain Gaussian fc6 (a flat spectrum: the
worst case, where subspace iteration stalls and the full ``eigh`` takes over).
Timings are noisy on a shared machine: with other processes on the cores, a
multi-threaded matrix-vector product stalls at every thread barrier, so the
inference comparison runs single-threaded by default (``--threads``).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from dldebug.compress import TruncatedSvd, compress_linear_layers, svd_residual, truncated_svd
from dldebug.compress.lowrank import factorized_module

LAYERS = {"fc6": (4096, 25088), "fc7": (4096, 4096)}
RANKS = (1024, 512, 256)
BATCHES = (1, 64)


def _seconds(module: nn.Module, x: torch.Tensor, inner: int) -> float:
    start = time.perf_counter()
    for _ in range(inner):
        module(x)
    return (time.perf_counter() - start) / inner


def bench_inference(repeats: int) -> list[tuple]:
    rows = []
    torch.manual_seed(0)
    for name, (m, n) in LAYERS.items():
        dense = nn.Linear(n, m).eval()
        pairs = {t: factorized_module(dense, torch.randn(t, n) / n ** 0.5, torch.randn(m, t) / t ** 0.5).eval()
                 for t in RANKS}
        for batch in BATCHES:
            x = torch.randn(batch, n)
            with torch.inference_mode():
                warm = _seconds(dense, x, 2)  # warm-up, and sizes the inner loop to ~50 ms per sample
                for pair in pairs.values():
                    _seconds(pair, x, 2)
                inner = max(1, round(0.05 / warm))
                # Interleave dense and low-rank samples so machine load hits both alike; the minimum over
                # samples is the cost with the least interference from other processes.
                samples: dict[object, list[float]] = {"dense": [], **{t: [] for t in RANKS}}
                for _ in range(repeats):
                    samples["dense"].append(_seconds(dense, x, inner))
                    for t, pair in pairs.items():
                        samples[t].append(_seconds(pair, x, inner))
            dense_s = min(samples["dense"])
            for t in RANKS:
                low_s = min(samples[t])
                theory = m * n / (t * (m + n))
                measured = dense_s / low_s
                rows.append((name, batch, t, round(dense_s * 1e3, 2), round(low_s * 1e3, 2), round(theory, 2),
                             round(measured, 2), f"{measured / theory:.0%}"))
    return rows


def synthetic_fc6(flat: bool) -> nn.Linear:
    """fc6-sized layer: Gaussian (flat spectrum) or Gaussian with power-law row/column scales (decaying)."""
    m, n = LAYERS["fc6"]
    torch.manual_seed(1)
    fc6 = nn.Linear(n, m)
    if not flat:
        with torch.no_grad():
            rows_scale = (1 + torch.arange(m) / 64.0) ** -0.5
            cols_scale = (1 + torch.arange(n) / 256.0) ** -0.5
            fc6.weight.copy_(torch.randn(m, n) / n ** 0.5 * rows_scale[:, None] * cols_scale[None, :])
    return fc6


def bench_compression(randomized: bool, flat: bool) -> list[tuple]:
    fc6 = synthetic_fc6(flat)
    weight = fc6.weight.detach()
    rows = []
    start, cpu_start = time.perf_counter(), time.process_time()
    result = compress_linear_layers(nn.Sequential(fc6), rank=1024)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    record = result.table.records()[0]
    # exact reference spectrum: float64 Gram matrix + eigvalsh (eigenvalues only)
    start, cpu_start = time.perf_counter(), time.process_time()
    w64 = weight.double()
    exact_s = torch.linalg.eigvalsh(w64 @ w64.T).flip(0).clamp_min(0).sqrt()
    ref_seconds, ref_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    total = float(exact_s.square().sum())
    optimal = (float(exact_s[1024:].square().sum()) / total) ** 0.5
    pair = result.model[0]
    approx = (pair[1].weight @ pair[0].weight).detach().double()
    achieved = float((w64 - approx).norm()) / total ** 0.5
    # the factors are V_t^T and U_t S_t: recover the triplets without factorising again
    second, first = pair[1].weight.detach(), pair[0].weight.detach()
    values = second.norm(dim=0)
    svd = TruncatedSvd(second / values, values, first, record["svd"])
    sv_error = float(((svd.S.double() - exact_s[:1024]).abs() / exact_s[:1024]).max())
    spectrum = "flat (Gaussian)" if flat else "decaying"
    rows.append((f"{spectrum}: compress_linear_layers(rank=1024), auto -> " + record["svd"], round(seconds, 1),
                 round(cpu_seconds, 1),
                 f"{achieved:.6f} vs optimal {optimal:.6f} (+{achieved / optimal - 1:.1e})",
                 f"{sv_error:.1e}", f"{svd_residual(weight, svd):.1e}"))
    rows.append(("reference: float64 Gram + eigvalsh (values only)", round(ref_seconds, 1), round(ref_cpu, 1),
                 "-", "-", "-"))
    if randomized:
        start, cpu_start = time.perf_counter(), time.process_time()
        low = truncated_svd(weight, 1024, method="randomized")
        rand_seconds, rand_cpu = time.perf_counter() - start, time.process_time() - cpu_start
        recon = (low.U.double() * low.S.double()) @ low.Vh.double()
        rand_err = float((w64 - recon).norm()) / total ** 0.5
        rand_sv = float(((low.S.double() - exact_s[:1024]).abs() / exact_s[:1024]).max())
        rows.append(("torch.svd_lowrank(q=1126, niter=2)", round(rand_seconds, 1), round(rand_cpu, 1),
                     f"{rand_err:.6f} vs optimal {optimal:.6f} (+{rand_err / optimal - 1:.1e})",
                     f"{rand_sv:.1e}", f"{svd_residual(weight, low):.1e}"))
    return rows


def bench_exact_fc7() -> list[tuple]:
    torch.manual_seed(2)
    weight = torch.randn(4096, 4096) / 64
    start = time.perf_counter()
    exact = torch.linalg.svd(weight.double(), full_matrices=False)
    exact_seconds = time.perf_counter() - start
    start = time.perf_counter()
    gram = truncated_svd(weight, 1024)
    gram_seconds = time.perf_counter() - start
    s_ref = exact.S[:1024]
    optimal = float(exact.S[1024:].square().sum().sqrt())
    recon = (gram.U.double() * gram.S.double()) @ gram.Vh.double()
    achieved = float((weight.double() - recon).norm())
    return [("fc7 4096x4096 rank 1024: auto (" + gram.method + ")", round(gram_seconds, 1),
             f"+{achieved / optimal - 1:.1e} over optimal",
             f"{float(((gram.S.double() - s_ref).abs() / s_ref).max()):.1e}", f"{svd_residual(weight, gram):.1e}"),
            ("fc7: exact torch.linalg.svd (float64)", round(exact_seconds, 1), "optimal", "0", "-")]


def _print(title: str, header: tuple, rows: list[tuple]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--randomized", action="store_true", help="also time torch.svd_lowrank on fc6")
    parser.add_argument("--exact-fc7", action="store_true", help="compare with a full exact SVD on fc7")
    parser.add_argument("--flat", action="store_true", help="also compress a Gaussian (flat-spectrum) fc6")
    parser.add_argument("--skip-inference", action="store_true")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads for the inference timings (1: robust on a busy machine)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    start = time.perf_counter()
    if not args.skip_inference:
        threads = torch.get_num_threads()
        torch.set_num_threads(args.threads)
        print(f"inference timed with {args.threads} thread(s)")
        _print("Inference: dense vs two factors (ms per call, min of samples)",
               ("layer", "batch", "rank", "dense ms", "low-rank ms", "theoretical x", "measured x", "of theory"),
               bench_inference(args.repeats))
        torch.set_num_threads(threads)
    rows = bench_compression(args.randomized, flat=False)
    if args.flat:
        rows += bench_compression(False, flat=True)
    _print("Compressing fc6 (4096 x 25088) at rank 1024",
           ("method", "wall s", "CPU s (all threads)", "relative weight error", "max sv rel. error", "residual"),
           rows)
    if args.exact_fc7:
        _print("Against a full exact SVD (fc7)", ("method", "seconds", "weight error", "max sv rel. error",
                                                 "residual"), bench_exact_fc7())
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
