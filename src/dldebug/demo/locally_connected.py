"""Demo scenario (lesson 5): a locally connected digits head next to a convolutional one.

Both heads see the 8x8 digits through a 3x3 layer with 8 output channels; the locally connected one owns
a different filter at each of the 6x6 locations. The scenario checks the layer against the per-location
definition (a naive loop, float64), trains both heads for real, and times one training step of each.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from dldebug.demo.context import DemoContext
from dldebug.demo.digits import train_digits
from dldebug.findings import Finding, Report, Severity, Table
from dldebug.nn.locally_connected import LocallyConnected2d

_TOLERANCE = 1e-10


def _head(first: nn.Module) -> nn.Sequential:
    return nn.Sequential(first, nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))


def _naive_max_error(seed: int) -> float:
    """Largest |output| and |gradient| difference from the per-location loop, in float64."""
    torch.manual_seed(seed)
    layer = LocallyConnected2d(3, 4, (9, 7), 3, stride=(2, 1), padding=1, dilation=(1, 2), dtype=torch.float64)
    x = torch.randn(5, 3, 9, 7, dtype=torch.float64, requires_grad=True)
    xp = nn.functional.pad(x, (1, 1, 1, 1))
    rows = []
    for i in range(layer.output_size[0]):
        cols = [(xp[:, :, 2 * i: 2 * i + 3, j: j + 5: 2].unsqueeze(1) * layer.weight[i, j]).sum(dim=(2, 3, 4))
                for j in range(layer.output_size[1])]
        rows.append(torch.stack(cols, dim=-1))
    assert layer.bias is not None
    naive = torch.stack(rows, dim=-2) + layer.bias
    fast = layer(x)
    grad_out = torch.randn_like(fast)
    grads_fast = torch.autograd.grad(fast, (x, layer.weight), grad_out)
    grads_naive = torch.autograd.grad(naive, (x, layer.weight), grad_out)
    diffs = [(fast - naive).abs().max()] + [(a - b).abs().max() for a, b in zip(grads_fast, grads_naive, strict=True)]
    return float(max(diffs))


def _step_ms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        nn.functional.cross_entropy(model(x), y).backward()
        best = min(best, time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    return best * 1e3


def scenario(ctx: DemoContext) -> Report:
    data = ctx.data
    error = _naive_max_error(ctx.seed)
    rows = []
    for name, first in (("Conv2d 8@3x3", nn.Conv2d(1, 8, 3)),
                        ("LocallyConnected2d 8@3x3", LocallyConnected2d(1, 8, input_size=8, kernel_size=3))):
        torch.manual_seed(ctx.seed)
        model = _head(first)
        history = train_digits(model, data, epochs=2 if ctx.quick else 3, seed=ctx.seed)
        step_ms = _step_ms(model, data.x_train[:64], data.y_train[:64])
        rows.append((name, sum(p.numel() for p in first.parameters()), sum(p.numel() for p in model.parameters()),
                     round(history.test_accuracy[-1], 4), round(step_ms, 3)))
    table = Table(
        "locally_connected.heads",
        ("first layer", "its parameters", "model parameters", "test accuracy", "train step ms (batch 64)"),
        tuple(rows),
        caption="Same geometry, trained the same way; the locally connected layer owns one 3x3 filter bank per "
                "output location (36 here), so it holds 36x the weights of the convolution.",
    )
    ok = error <= _TOLERANCE
    finding = Finding(
        "locally_connected.matches_definition", Severity.INFO if ok else Severity.ERROR,
        f"LocallyConnected2d equals the per-location loop to {error:.1e} (outputs and gradients, float64)",
        {"max_abs_difference": error, "tolerance": _TOLERANCE, "lc_parameters": rows[1][1],
         "conv_parameters": rows[0][1]},
        fix=None if ok else "Report this: the fast path and the definition disagree.",
        lesson=5,
    )
    return Report([finding], title="Locally connected layers (DeepFace's unshared convolutions)", tables=(table,),
                  meta={"naive_max_abs_difference": error})
