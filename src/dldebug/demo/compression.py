"""Demo scenario: compress the digits CNN's fully connected layers by truncated SVD (lesson 7)."""

from __future__ import annotations

import torch
from torch import nn

from dldebug.compress import accuracy_vs_size, compress_linear_layers
from dldebug.compress.calibration import collect_layer_inputs
from dldebug.compress.lowrank import factorized_module
from dldebug.compress.spectrum import analyse_layer
from dldebug.demo.context import DemoContext
from dldebug.demo.digits import accuracy
from dldebug.findings import Figure, Finding, Report, Series, Severity, Table

LAYER = "classifier.1"  # the 512 -> 64 layer: 87% of the CNN's parameters
RANKS = (2, 4, 6, 8, 12, 16, 24, 32)
RATIOS = (0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5)


def _layer_inputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return collect_layer_inputs(model, {LAYER: model.get_submodule(LAYER)}, x)[LAYER]


def _data_aware_vs_plain(model: nn.Module, ctx: DemoContext) -> tuple[Table, Figure, Finding]:
    """Held-out output error and accuracy, plain SVD vs data-aware, at equal ranks of one layer.

    Each variant is factorised once; the held-out images' activations entering the
    layer are computed once, and only the head after it runs per rank.
    """
    data = ctx.data
    layer = model.get_submodule(LAYER)
    head = nn.Sequential(model.get_submodule("classifier.2"), model.get_submodule("classifier.3"))  # after it
    calib_rows, test_rows = _layer_inputs(model, data.x_train[:512]), _layer_inputs(model, data.x_test)
    with torch.no_grad():
        exact = layer(test_rows)
    errors: dict[str, list[float]] = {"plain SVD": [], "data-aware": []}
    accuracies: dict[str, list[float]] = {"plain SVD": [], "data-aware": []}
    for label, aware in (("plain SVD", False), ("data-aware", True)):
        spectrum = analyse_layer(LAYER, layer, max(RANKS), inputs=calib_rows, data_aware=aware)
        for rank in RANKS:
            with torch.no_grad():
                approx = factorized_module(layer, *spectrum.factors(rank))(test_rows)
                predicted = head(approx).argmax(1)
            errors[label].append(float((approx - exact).norm() / exact.norm()))
            accuracies[label].append(float((predicted == data.y_test).float().mean()))
    rows = [(rank, round(errors["plain SVD"][i], 4), round(accuracies["plain SVD"][i], 4),
             round(errors["data-aware"][i], 4), round(accuracies["data-aware"][i], 4))
            for i, rank in enumerate(RANKS)]
    table = Table("compress.data_aware_vs_plain",
                  ("rank", "plain output error", "plain accuracy", "data-aware output error",
                   "data-aware accuracy"), tuple(rows),
                  caption=f"Layer {LAYER} (64 x 512) alone, calibrated on 512 training images; relative "
                          "output error and accuracy on the 449 held-out test images.")
    figure = Figure("compress.data_aware_vs_plain", title=f"{LAYER}: output error at equal rank",
                    series=tuple(Series(k, RANKS, v) for k, v in errors.items()), xlabel="rank",
                    ylabel="relative output error", logy=True,
                    caption="Data-aware factors minimise ||X (W - W_t)^T|| on calibration inputs X instead of "
                            "||W - W_t||: the same parameters buy a smaller output error on unseen images.")
    wins = sum(a < p for a, p in zip(errors["data-aware"], errors["plain SVD"], strict=True))
    finding = Finding("compress.data_aware_better", Severity.INFO,
                      f"Data-aware factorisation beat plain SVD at {wins} of {len(RANKS)} ranks on {LAYER}'s "
                      "output error.",
                      {"layer": LAYER, "ranks": ",".join(map(str, RANKS)), "wins": wins,
                       "plain_error_at_8": errors["plain SVD"][RANKS.index(8)],
                       "data_aware_error_at_8": errors["data-aware"][RANKS.index(8)]},
                      fix="Pass calib_data=... (a few hundred typical inputs) to compress_linear_layers.",
                      lesson=7)
    return table, figure, finding


def scenario(ctx: DemoContext) -> Report:
    model, _ = ctx.baseline()
    data = ctx.data
    calib = data.x_train[:512]

    def test_accuracy(candidate: nn.Module) -> float:
        return accuracy(candidate, data.x_test, data.y_test)

    curve = accuracy_vs_size(model, test_accuracy, param_ratios=RATIOS, calib_data=calib)
    chosen = curve.smallest_within(0.01)
    ratio = chosen.param_ratio if chosen.param_ratio < 1.0 else max(RATIOS)
    result = compress_linear_layers(model, param_ratio=ratio, calib_data=calib, eval_fn=test_accuracy)
    table, figure, finding = _data_aware_vs_plain(model, ctx)
    compressed = result.report
    return Report((*compressed.own_findings, finding, *curve.report.own_findings),
                  title="Compressing the fully connected layers (lesson 7)",
                  tables=(*compressed.tables, curve.table, table),
                  figures=(curve.figure, figure, *compressed.figures),
                  meta={"param_ratio": ratio, "accuracy_before": result.accuracy_before,
                        "accuracy_after": result.accuracy_after})
