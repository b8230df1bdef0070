"""Cost of CheckedCTCLoss against plain nn.CTCLoss on a (T=200, N=64, C=100) batch, forward + backward.

Run:  .venv/bin/python benchmarks/bench_ctc.py [--threads 1] [--repeats 40] [--crnn]

``--crnn`` also times the acceptance run: the digit-sequence CRNN trained with
CheckedCTCLoss for 5 epochs (wall and CPU seconds, held-out sequence accuracy).

Every variant runs on the same tensors, interleaved round-robin so machine
load hits them alike; the table reports median milliseconds and the ratio to
plain nn.CTCLoss. "default" is check="first" measured after its first batch.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from dldebug.ctc import check_ctc
from dldebug.nn import CheckedCTCLoss

T, N, C, S = 200, 64, 100, 50


def make_batch(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    log_probs = torch.randn(T, N, C, generator=g).log_softmax(-1)
    targets = torch.randint(1, C, (N, S), generator=g)
    target_lengths = torch.randint(S // 2, S + 1, (N,), generator=g)
    input_lengths = torch.randint(T - 50, T + 1, (N,), generator=g)
    return log_probs, targets, input_lengths, target_lengths


def step(loss_fn: nn.Module, batch: tuple[torch.Tensor, ...]) -> None:
    log_probs = batch[0].clone().requires_grad_()
    loss_fn(log_probs, *batch[1:]).backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--crnn", action="store_true", help="also time the CRNN acceptance training")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_loss(args.repeats)
    if args.crnn:
        bench_crnn()


def bench_crnn() -> None:
    from dldebug.demo.ctc_digits import CRNN, digit_sequence_split, train_crnn
    from dldebug.demo.digits import load_digits_data

    train, test = digit_sequence_split(load_digits_data())
    torch.manual_seed(0)
    model = CRNN(num_classes=11)
    cpu_start = time.process_time()
    history = train_crnn(model, train, test, epochs=5, loss_fn=CheckedCTCLoss(num_labels=10))
    cpu = time.process_time() - cpu_start
    print(f"\nCRNN acceptance ({len(train)} training / {len(test)} held-out sequences, 5 epochs, "
          f"{torch.get_num_threads()} thread(s)):")
    print("| wall s | CPU s | held-out sequence accuracy per epoch |")
    print("|---:|---:|---|")
    print(f"| {history.seconds:.1f} | {cpu:.1f} | {', '.join(f'{a:.3f}' for a in history.test_accuracy)} |")


def bench_loss(repeats: int) -> None:
    batch = make_batch()
    default = CheckedCTCLoss()
    step(default, batch)  # its first batch runs the checks; later ones only watch for inf/NaN
    variants: dict[str, Callable[[], None]] = {
        "nn.CTCLoss (plain)": lambda: step(nn.CTCLoss(), batch),
        'CheckedCTCLoss check="always"': lambda: step(CheckedCTCLoss(check="always"), batch),
        'CheckedCTCLoss default, after batch 1': lambda: step(default, batch),
        'CheckedCTCLoss check="never"': lambda: step(CheckedCTCLoss(check="never"), batch),
        "check_ctc alone (no loss)": lambda: check_ctc(*batch),
    }
    for run in variants.values():  # warm-up
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    plain = statistics.median(times["nn.CTCLoss (plain)"])
    print(f"(T={T}, N={N}, C={C}, S<={S}) float32 CPU, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), {repeats} interleaved repeats")
    print("| variant (forward + backward) | median ms | ratio to plain |")
    print("|---|---:|---:|")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"| {name} | {median * 1e3:.2f} | {median / plain:.3f} |")


if __name__ == "__main__":
    main()
