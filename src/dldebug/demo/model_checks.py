"""Demo scenario: model checks on the digits — equivariance (lesson 1), capacity and over-fitting (lesson 3).

A pooled classifier (the trained baseline) against an all-convolutional dense net (circular
padding, stride 1, trained briefly to segment the ink of each digit); a parameter audit of the
baseline and of a C3D-like head built on the meta device (no memory); and the over-fit test on a
healthy CNN against one whose softmax feeds ``CrossEntropyLoss``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from dldebug.checks import OverfitResult, can_overfit, parameter_audit, probe_equivariance
from dldebug.demo.context import DemoContext
from dldebug.demo.digits import DigitsCNN
from dldebug.findings import Figure, Finding, Report, Series, Table

__all__ = ["AllConvSegmenter", "scenario"]


class AllConvSegmenter(nn.Module):
    """Three stride-1 convolutions with circular padding: a per-pixel (dense) model for 1x8x8 digits."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, padding_mode="circular"), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, padding_mode="circular"), nn.ReLU(),
            nn.Conv2d(width, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _train_segmenter(ctx: DemoContext, steps: int) -> AllConvSegmenter:
    torch.manual_seed(ctx.seed)
    model = AllConvSegmenter()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = ctx.data.x_train
    ink = (x > 0).float()  # the target: which pixels hold ink (x is normalised around 0)
    generator = torch.Generator().manual_seed(ctx.seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.binary_cross_entropy_with_logits(model(x[idx]), ink[idx])
        loss.backward()
        optimizer.step()
    return model.eval()


def _equivariance_rows(name: str, task: str, report: Report) -> tuple:
    broken = report.get("equivariance.broken") or report.get("invariance.broken")
    output = {r["transform"]: r for r in report.table("equivariance.output").records()}
    layers = report.table("equivariance.layers").records()
    first = next((r for r in layers if r["verdict"] != "ok"), None)
    at_output = next(r for r in layers if r["layer"] == "(output)")
    errors = [at_output[f"translate {s}"] if task == "dense" else output[f"translate {s}"]["invariance error"]
              for s in (1, 2, 4)]
    return (name, task, *errors,
            output["translate 1"]["top-1 change rate"],
            f"{first['layer']} ({first['type']})" if first else "none", broken.check if broken else "ok")


def _c3d_like_head() -> nn.Module:
    with torch.device("meta"):  # 11.5 billion parameters, none allocated
        return nn.Sequential(nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(), nn.Flatten(),
                             nn.Linear(512 * 128 * 171, 1024), nn.ReLU(), nn.Linear(1024, 10))


def _renamed(table: Table, name: str) -> Table:
    return Table(name, table.columns, table.rows, table.caption)


def _equivariance_section(ctx: DemoContext, classifier: nn.Module) -> tuple[Table, dict[str, tuple[str, Report]]]:
    segmenter = _train_segmenter(ctx, 40 if ctx.quick else 120)
    x = ctx.data.x_test[:64]
    probes = {
        "pooled classifier (DigitsCNN)": ("classification", probe_equivariance(
            classifier, x, transforms=("translate",), task="classification")),
        "all-conv dense net": ("dense", probe_equivariance(segmenter, x, transforms=("translate",), task="dense")),
    }
    table = Table(
        "model_checks.equivariance",
        ("model", "task", "translate 1", "translate 2", "translate 4", "top-1 change (1 px)",
         "first broken layer", "finding"),
        tuple(_equivariance_rows(name, task, rep) for name, (task, rep) in probes.items()),
        caption="Output error under circular shifts of 64 test digits: the classifier's invariance error "
                "||f(Tx) - f(x)|| / ||f(x)||, the dense net's equivariance error ||f(Tx) - Tf(x)|| / ||f(x)||.")
    return table, probes


def _capacity_section(ctx: DemoContext, classifier: nn.Module) -> tuple[Table, dict[str, Report]]:
    n_train = len(ctx.data.y_train)
    audits = {"DigitsCNN": parameter_audit(classifier, n_train_samples=n_train, example_input=ctx.data.x_test[:2]),
              "C3D-like head (meta device)": parameter_audit(
                  _c3d_like_head(), n_train_samples=n_train,
                  example_input=torch.empty(1, 512, 128, 171, device="meta"))}
    table = Table(
        "model_checks.capacity", ("model", "params", "params per sample", "dominant layer", "its share",
                                  "after the 1x1-conv fix"),
        tuple(_capacity_row(name, rep) for name, rep in audits.items()),
        caption=f"Parameter audit against the {n_train:,} training digits; the C3D-like head is lesson 3's "
                "512x128x171 map flattened into FC layers.")
    return table, audits


def _overfit_section(ctx: DemoContext) -> tuple[Figure, dict[str, OverfitResult]]:
    batch = (ctx.data.x_train[:32], ctx.data.y_train[:32])
    torch.manual_seed(ctx.seed)
    healthy, softmaxed = DigitsCNN(), nn.Sequential(DigitsCNN(), nn.Softmax(dim=1))
    # No step count: the test runs until the loss is near zero or clearly stalls (capped), so the healthy
    # model passes early and the softmax one is called stalled, not "unfinished".
    results = {name: can_overfit(model, batch, nn.CrossEntropyLoss(), lr=3e-3)
               for name, model in (("DigitsCNN", healthy), ("softmax before CrossEntropyLoss", softmaxed))}
    figure = Figure("model_checks.overfit", title="Over-fitting one batch of 32 digits",
                    series=tuple(Series(name, range(len(r.history)), r.history) for name, r in results.items()),
                    xlabel="step", ylabel="cross-entropy", logy=True,
                    caption="A healthy CNN drives the loss towards zero; with a softmax before CrossEntropyLoss "
                            "the loss cannot fall below about 1.46 (ln(e + 9) - 1).")
    return figure, results


def scenario(ctx: DemoContext) -> Report:
    """Equivariance and capacity tables and the over-fit curves (about 6 s on one busy core)."""
    classifier = copy.deepcopy(ctx.baseline()[0])
    equivariance, probes = _equivariance_section(ctx, classifier)
    capacity, audits = _capacity_section(ctx, classifier)
    figure, overfits = _overfit_section(ctx)
    findings: list[Finding] = [f for _, rep in probes.values() for f in rep.findings]
    findings += [f for rep in audits.values() for f in rep.findings]
    findings += [f for r in overfits.values() for f in r.findings]
    tables = [equivariance, capacity]
    tables += [_renamed(rep.table("equivariance.layers"), f"model_checks.layers.{task}")
               for task, rep in probes.values()]
    tables += [_renamed(audits["C3D-like head (meta device)"].table("capacity.layers"), "model_checks.c3d_layers")]
    return Report(findings, title="Model checks: equivariance, capacity, over-fitting", tables=tables,
                  figures=(figure,), meta={"overfit_passed": ", ".join(f"{n}: {r.passed}" for n, r in
                                                                        overfits.items())})


def _capacity_row(name: str, report: Report) -> tuple:
    table = report.table("capacity.layers")
    top = max(table.records(), key=lambda r: r["params"])
    finding = report.get("capacity.dominant_layer")
    fixed = finding.evidence["total_params_after_fix"] if finding else None
    return (name, report.meta["params"], report.meta["params_per_sample"], f"{top['layer']} ({top['type']})",
            top["share"], fixed if fixed is not None else "no fix needed")
