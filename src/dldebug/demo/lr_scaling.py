"""Demo scenario (lesson 11): batch 1024 with the old learning rate vs a linearly scaled one with warm-up."""

from __future__ import annotations

import torch

from dldebug.demo.context import DemoContext
from dldebug.demo.digits import DigitsCNN, train_digits
from dldebug.findings import Figure, Finding, Report, Series, Severity, Table
from dldebug.lr import lr_range_test, scale_lr, warmup

BASE_LR, BASE_BATCH, BIG_BATCH = 0.005, 64, 1024
WIDTH = 8  # a narrower digits CNN keeps the two 20-epoch runs within the demo's time budget


def _run(ctx: DemoContext, lr: float, warmup_steps: int, epochs: int) -> tuple[list[int], list[float], float]:
    torch.manual_seed(ctx.seed)
    model = DigitsCNN(width=WIDTH)
    factory = None
    if warmup_steps:
        def factory(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
            return warmup(opt, warmup_steps, start_factor=BASE_LR / lr)
    history = train_digits(model, ctx.data, epochs=epochs, lr=lr, batch_size=BIG_BATCH, optimizer="sgd",
                           seed=ctx.seed, scheduler_factory=factory)
    return history.steps, history.losses, history.test_accuracy[-1]


def _range_test(ctx: DemoContext) -> Report:
    torch.manual_seed(ctx.seed)
    model = DigitsCNN(width=WIDTH)
    optimizer = torch.optim.SGD(model.parameters(), lr=BASE_LR, momentum=0.9)
    x, y = ctx.data.x_train, ctx.data.y_train
    batches = [(x[i:i + BASE_BATCH], y[i:i + BASE_BATCH]) for i in range(0, len(y) - BASE_BATCH + 1, BASE_BATCH)]
    return lr_range_test(model, batches, torch.nn.CrossEntropyLoss(), optimizer, start=1e-5, end=10,
                         steps=60 if ctx.quick else 100).report


def scenario(ctx: DemoContext) -> Report:
    epochs = 10 if ctx.quick else 20
    scaled = scale_lr(BASE_LR, BASE_BATCH, BIG_BATCH, rule="linear", optimizer="sgd")
    steps_a, loss_a, acc_a = _run(ctx, BASE_LR, 0, epochs)
    ctx.advance(1, 3)
    steps_b, loss_b, acc_b = _run(ctx, scaled.lr, 10, epochs)
    ctx.advance(2, 3)
    finding = Finding(
        "lr.batch_changed", Severity.WARNING if acc_a < acc_b else Severity.INFO,
        f"batch {BASE_BATCH} -> {BIG_BATCH} with the old lr {BASE_LR:g}: test accuracy {acc_a:.1%} after {epochs} "
        f"epochs; linearly scaled lr {scaled.lr:.3g} with a 10-step warm-up: {acc_b:.1%}",
        {"base_lr": BASE_LR, "scaled_lr": scaled.lr, "epochs": epochs, "accuracy_unscaled": acc_a,
         "accuracy_scaled_warmup": acc_b}, fix=scaled.rationale, lesson=11)
    figure = Figure("lr.batch_1024", title=f"Digits CNN at batch {BIG_BATCH}: same epochs, two learning rates",
                    series=(Series(f"unscaled lr {BASE_LR:g}", steps_a, loss_a),
                            Series(f"scaled lr {scaled.lr:.3g} + warm-up", steps_b, loss_b)),
                    xlabel="step", ylabel="training loss", logy=True)
    table = Table("lr.batch_1024_accuracy", ("run", "lr", "test accuracy"),
                  (("unscaled", BASE_LR, round(acc_a, 4)), ("linear scaling + warm-up", scaled.lr, round(acc_b, 4))))
    range_section = _range_test(ctx)
    return Report([finding], title="Learning rate vs batch size (lesson 11)", figures=(figure,), tables=(table,),
                  sections=(range_section,))
