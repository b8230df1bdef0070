"""Demo scenario: the healthy digits run, its loss curve and test accuracy."""

from __future__ import annotations

from dldebug.demo.context import DemoContext
from dldebug.findings import Figure, Report, Series, Table


def scenario(ctx: DemoContext) -> Report:
    model, history = ctx.baseline()
    n_params = sum(p.numel() for p in model.parameters())
    figure = Figure(
        "digits.training_curve",
        title="Digits CNN: training loss per step",
        series=(Series("training loss", history.steps, history.losses),),
        xlabel="step", ylabel="cross-entropy", logy=True,
        caption="A healthy run: Adam, lr 1e-3, batch 64, on 1,348 training images of sklearn's 8x8 digits.",
    )
    table = Table(
        "digits.accuracy",
        ("epoch", "last step", "test accuracy"),
        tuple((i + 1, s, round(a, 4)) for i, (s, a) in enumerate(zip(history.epoch_steps, history.test_accuracy,
                                                                     strict=True))),
        caption=f"{n_params:,} parameters; 449 held-out test images.",
    )
    return Report(title="Training the digits CNN", figures=(figure,), tables=(table,),
                  meta={"final_test_accuracy": history.test_accuracy[-1]})
