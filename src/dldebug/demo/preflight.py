"""Demo scenario: the pre-flight doctor on a correct digits set-up and on one with three planted bugs."""

from __future__ import annotations

import torch
from torch import nn

from dldebug.demo.context import DemoContext
from dldebug.demo.digits import DigitsCNN
from dldebug.findings import Report
from dldebug.preflight import preflight


class _SoftmaxDigits(DigitsCNN):
    """The planted double-softmax bug: probabilities fed to CrossEntropyLoss."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).softmax(dim=1)


def _step_without_zero_grad(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
                            loss_fn: nn.Module, optimizer: torch.optim.Optimizer) -> torch.Tensor:
    loss = loss_fn(model(batch[0]), batch[1])
    loss.backward()  # the planted bug: optimizer.zero_grad() is missing
    optimizer.step()
    return loss


def _step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], loss_fn: nn.Module,
          optimizer: torch.optim.Optimizer) -> torch.Tensor:
    optimizer.zero_grad()
    loss = loss_fn(model(batch[0]), batch[1])
    loss.backward()
    optimizer.step()
    return loss


def scenario(ctx: DemoContext) -> Report:
    batch = (ctx.data.x_train[:64], ctx.data.y_train[:64])
    torch.manual_seed(ctx.seed)
    good = DigitsCNN()
    healthy = preflight(good, batch, nn.CrossEntropyLoss(), torch.optim.SGD(good.parameters(), lr=0.05, momentum=0.9),
                        train_step=_step)
    bad = _SoftmaxDigits()
    bad.eval()  # planted: left in eval mode
    buggy = preflight(bad, batch, nn.CrossEntropyLoss(), torch.optim.SGD(bad.parameters(), lr=0.05),
                      train_step=_step_without_zero_grad)
    healthy.title = "Correct set-up: no findings"
    buggy.title = "Planted bugs: softmax before CrossEntropyLoss, eval mode, no zero_grad"
    return Report(title="Pre-flight doctor", sections=(healthy, buggy))
