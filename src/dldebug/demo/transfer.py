"""Demo scenario (lesson 4): cut a pretrained digits CNN into a feature extractor and re-train a head.

A DigitsCNN is pretrained for real on the digits 0-4 only. The digits 5-9, which it never saw,
are the new task: the pretrained model is cut with ``dldebug.feature_extractor`` at several
layers, the cut part stays frozen, and a new linear head is trained on its features (standardised
with training statistics, full-batch Adam until it converges, so every cut gets the same fair chance).
The cut ``dldebug.suggested_cut`` picks (fc_1) keeps generic features; a cut after the old task's
output layer keeps only its five task-specific logits and loses a quarter of the accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dldebug.checks.transfer import feature_extractor, suggested_cut, task_specific_layers, transfer_report
from dldebug.demo.context import DemoContext
from dldebug.demo.digits import DigitsCNN, DigitsData, train_digits
from dldebug.findings import Figure, Finding, Report, Series, Severity, Table

__all__ = ["NEW_CLASSES", "PRETRAIN_CLASSES", "CutResult", "class_split", "scenario", "train_head"]

PRETRAIN_CLASSES = (0, 1, 2, 3, 4)
NEW_CLASSES = (5, 6, 7, 8, 9)
CONV_STACK = "features.4"  # the max-pool closing the convolutions: the most generic cut shown
_EVAL_EVERY = 10


@dataclass(frozen=True)
class CutResult:
    """A head trained on the frozen features of one cut: its size and held-out accuracy per step."""

    layer: str
    features: int
    steps: tuple[int, ...]
    accuracy: tuple[float, ...]
    train_accuracy: float

    @property
    def final_accuracy(self) -> float:
        return self.accuracy[-1]


def class_split(data: DigitsData, classes: tuple[int, ...]) -> DigitsData:
    """The images of ``classes`` only, relabelled 0..len(classes)-1 (train and test splits kept apart)."""
    relabel = torch.full((10,), -1, dtype=torch.long)
    relabel[list(classes)] = torch.arange(len(classes))

    def keep(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.isin(y, torch.tensor(classes))
        return x[mask], relabel[y[mask]]

    return DigitsData(*keep(data.x_train, data.y_train), *keep(data.x_test, data.y_test))


def train_head(model: nn.Module, layer: str, data: DigitsData, *, steps: int, seed: int = 0) -> CutResult:
    """Cut ``model`` at ``layer`` (frozen, weights shared, not changed) and train a linear head on ``data``."""
    extractor = feature_extractor(model, layer).eval()
    with torch.no_grad():
        train = extractor(data.x_train).flatten(1)
        test = extractor(data.x_test).flatten(1)
    mean, std = train.mean(0), train.std(0) + 1e-6
    train, test = (train - mean) / std, (test - mean) / std
    torch.manual_seed(seed)
    head = nn.Linear(train.shape[1], int(data.y_train.max()) + 1)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    done, accuracy = [], []
    for step in range(1, steps + 1):
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(head(train), data.y_train).backward()
        optimizer.step()
        if step % _EVAL_EVERY == 0 or step == steps:
            with torch.no_grad():
                accuracy.append(float((head(test).argmax(1) == data.y_test).float().mean()))
            done.append(step)
    with torch.no_grad():
        train_accuracy = float((head(train).argmax(1) == data.y_train).float().mean())
    return CutResult(layer, train.shape[1], tuple(done), tuple(accuracy), train_accuracy)


def _pretrain(ctx: DemoContext, source: DigitsData) -> tuple[DigitsCNN, float]:
    torch.manual_seed(ctx.seed)
    model = DigitsCNN(num_classes=len(PRETRAIN_CLASSES))
    history = train_digits(model, source, epochs=4 if ctx.quick else 6, seed=ctx.seed)
    return model.eval(), history.test_accuracy[-1]


def _roles(right: str, wrong: str) -> dict[str, str]:
    return {CONV_STACK: "end of the convolutions", right: "suggested_cut (fc_1)",
            "classifier.2": "fc_1 + ReLU", wrong: "old task's output layer (task-specific)"}


def scenario(ctx: DemoContext) -> Report:
    """Pretrain on digits 0-4, then re-train a head on 5-9 for each cut; compare the right and wrong cut."""
    source, target = class_split(ctx.data, PRETRAIN_CLASSES), class_split(ctx.data, NEW_CLASSES)
    model, source_accuracy = _pretrain(ctx, source)
    ctx.advance(1, 5)
    right = suggested_cut(model, num_classes=len(PRETRAIN_CLASSES))
    wrong = task_specific_layers(model, num_classes=len(PRETRAIN_CLASSES))[-1]  # the output layer itself
    roles = _roles(right, wrong)
    steps = 200 if ctx.quick else 400
    results = {}
    for k, layer in enumerate(roles, start=2):
        results[layer] = train_head(model, layer, target, steps=steps, seed=ctx.seed)
        ctx.advance(k, 5)
    plan = transfer_report(model, num_classes=len(PRETRAIN_CLASSES))
    return Report((*plan.own_findings, _verdict(results[right], results[wrong], results[CONV_STACK], steps)),
                  title="Transfer learning: where to cut a pretrained model (lesson 4)",
                  tables=(_table(results, roles, len(target.y_train), len(target.y_test)), *plan.tables),
                  figures=(_figure(results, roles),),
                  meta={"pretrain_test_accuracy": source_accuracy, "suggested_cut": right, "wrong_cut": wrong,
                        "head_steps": steps, "right_cut_accuracy": results[right].final_accuracy,
                        "wrong_cut_accuracy": results[wrong].final_accuracy})


def _verdict(right: CutResult, wrong: CutResult, conv: CutResult, steps: int) -> Finding:
    better = right.final_accuracy > wrong.final_accuracy
    return Finding(
        "transfer.wrong_cut", Severity.WARNING if better else Severity.ERROR,
        f"cutting after the old task's output layer {wrong.layer!r} keeps {wrong.features} task-specific features: "
        f"{wrong.final_accuracy:.1%} on the new digits 5-9, against {right.final_accuracy:.1%} at the suggested "
        f"cut {right.layer!r} ({right.features} features) and {conv.final_accuracy:.1%} at the end of the "
        f"convolutions {conv.layer!r}",
        {"wrong_cut": wrong.layer, "wrong_cut_accuracy": wrong.final_accuracy,
         "wrong_cut_train_accuracy": wrong.train_accuracy, "suggested_cut": right.layer,
         "suggested_cut_accuracy": right.final_accuracy, "conv_stack_accuracy": conv.final_accuracy,
         "head_steps": steps},
        fix=f"Cut at dldebug.suggested_cut(model) ({right.layer!r}: the convolutions plus fc_1) or earlier, "
            "and train a new head for the new classes; drop the old output layer." if better else
            "The suggested cut did not beat the task head here: report this scenario.",
        lesson=4)


def _table(results: dict[str, CutResult], roles: dict[str, str], n_train: int, n_test: int) -> Table:
    rows = tuple((layer, roles[layer], r.features, (r.features + 1) * len(NEW_CLASSES), round(r.train_accuracy, 4),
                  round(r.final_accuracy, 4)) for layer, r in results.items())
    return Table("transfer.cuts", ("cut after", "role", "features", "head parameters", "train accuracy",
                                   "held-out accuracy"), rows,
                 caption=f"A DigitsCNN pretrained on digits 0-4 is cut and frozen; a new linear head learns digits "
                         f"5-9 from {n_train} training images; accuracy on {n_test} held-out images of 5-9.")


def _figure(results: dict[str, CutResult], roles: dict[str, str]) -> Figure:
    return Figure(
        "transfer.head_accuracy", title="New head on frozen features: held-out accuracy on digits 5-9",
        series=tuple(Series(f"{layer} ({roles[layer]})", r.steps, r.accuracy) for layer, r in results.items()),
        xlabel="head training step (full batch, Adam lr 1e-2)", ylabel="held-out accuracy",
        caption="The closer the cut is to the old output, the more task-specific its features: the five logits "
                "of the digits 0-4 cannot tell 5-9 apart as well as fc_1 or the convolutions can.")
