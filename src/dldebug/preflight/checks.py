"""The pre-flight checks, one function each: ``check(setup) -> (findings, skip reason or None)``.

Each check works on copies (``setup.copy()``), never on the user's model or
optimizer, and is tested on a planted bug and on a correct set-up.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from dldebug.checks.losses import ClassLogits
from dldebug.findings import Finding, Severity
from dldebug.model_io import model_loss
from dldebug.preflight.setup import TrainingSetup

CheckOutcome = tuple[list[Finding], str | None]


def params_not_in_optimizer(setup: TrainingSetup) -> CheckOutcome:
    in_optimizer = {id(p) for group in setup.optimizer.param_groups for p in group["params"]}
    missing = [name for name, p in setup.model.named_parameters() if p.requires_grad and id(p) not in in_optimizer]
    if not missing:
        return [], None
    total = sum(p.numel() for name, p in setup.model.named_parameters() if name in missing)
    return [Finding("preflight.params_not_in_optimizer", Severity.ERROR,
                    f"{len(missing)} trainable parameter(s) are not in the optimizer and will never be updated",
                    {"parameters": missing[:20], "count": len(missing), "elements": total},
                    fix="Build the optimizer from model.parameters() after the model is complete (layers added "
                        "after the optimizer are left out), or add them with optimizer.add_param_group(...).")], None


def no_grad(setup: TrainingSetup) -> CheckOutcome:
    work = setup.copy()
    work.model.train()
    work.model.zero_grad(set_to_none=True)
    loss, _ = model_loss(work.model, setup.batch, work.loss_fn, output=setup.output, tool="preflight")
    if not loss.requires_grad:
        return [Finding("preflight.no_grad", Severity.ERROR, "the loss does not depend on any trainable parameter",
                        {"loss": float(loss.detach())},
                        fix="Look for torch.no_grad(), .detach() or .item() between the model output and the loss, "
                            "or parameters frozen with requires_grad=False.")
                ], None
    loss.backward()
    dead = [name for name, p in work.model.named_parameters() if p.requires_grad and p.grad is None]
    if not dead:
        return [], None
    return [Finding("preflight.no_grad", Severity.WARNING,
                    f"{len(dead)} trainable parameter(s) receive no gradient from the loss",
                    {"parameters": dead[:20], "count": len(dead)},
                    fix="These layers are unused in forward, or their output is detached before the loss. Remove "
                        "them, freeze them (requires_grad=False), or reconnect them.")], None


def _not_classes(setup: TrainingSetup) -> str:
    if setup.loss_fn is None:
        return ("the model's own loss is not a plain cross-entropy of its logits against the labels (checked "
                "against F.cross_entropy; e.g. a shifted language-model loss)")
    return "the loss is not a cross-entropy/NLL over class logits (N, C, ...)"


def double_softmax(setup: TrainingSetup) -> CheckOutcome:
    view = setup.class_view()
    if view is None:
        return [], _not_classes(setup)
    out = view.logits.float()
    sums = out.exp().sum(dim=1)
    looks_log_softmax = bool((out <= 1e-6).all()) and bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-3))
    row_sums = out.sum(dim=1)
    looks_softmax = bool(((out >= 0) & (out <= 1)).all()) and bool(
        torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-3))
    if view.kind == "cross_entropy" and (looks_softmax or looks_log_softmax):
        kind = "log-softmax" if looks_log_softmax else "softmax"
        return [Finding("preflight.double_softmax", Severity.ERROR,
                        f"the model already applies {kind} and CrossEntropyLoss applies log-softmax again",
                        {"output_kind": kind, "row_sum_min": float(row_sums.min()),
                         "row_sum_max": float(row_sums.max()), "output_min": float(out.min()),
                         "output_max": float(out.max())},
                        fix="Return raw logits from the model (drop the final softmax/log_softmax), or use NLLLoss "
                            "with log_softmax outputs.")], None
    if view.kind == "nll" and not looks_log_softmax:
        return [Finding("preflight.double_softmax", Severity.ERROR,
                        "NLLLoss expects log-probabilities but the model's outputs are not log-softmax",
                        {"output_kind": "softmax" if looks_softmax else "raw", "output_max": float(out.max()),
                         "exp_row_sum_max": float(sums.max())},
                        fix="Apply log_softmax(dim=1) before NLLLoss, or use CrossEntropyLoss on raw logits.")], None
    return [], None


def _class_indices(view: ClassLogits) -> torch.Tensor | None:
    """The targets as class indices without the ignored ones, or None when they are not indices."""
    targets = view.targets
    if not isinstance(targets, torch.Tensor) or targets.dtype not in (torch.int64, torch.int32, torch.int16,
                                                                       torch.uint8):
        return None
    return targets[targets != view.ignore_index].long()


def init_loss(setup: TrainingSetup) -> CheckOutcome:
    view = setup.class_view()
    if view is None or view.kind != "cross_entropy":
        return [], _not_classes(setup) if view is None else "not a cross-entropy loss over class logits"
    valid = _class_indices(view)
    if valid is None:
        return [], "targets are not class indices"
    classes = view.classes
    if valid.numel() == 0 or int(valid.min()) < 0 or int(valid.max()) >= classes:
        return [], "targets out of range (see preflight.bad_targets)"
    out = view.logits.float()
    loss = float(F.cross_entropy(out, view.targets.long(), ignore_index=view.ignore_index))
    expected = math.log(classes)
    if loss <= 1.5 * expected + 0.5:
        return [], None
    return [Finding("preflight.init_loss", Severity.WARNING,
                    f"initial loss {loss:.3g} is far above ln(C) = {expected:.3g} for C = {classes} classes",
                    {"initial_loss": loss, "expected": expected, "classes": classes,
                     "max_abs_logit": float(out.abs().max())}, lesson=3,
                    fix="The untrained model is confidently wrong: scale down the last layer's initial weights "
                        "(e.g. zero or small init), remove a logit multiplier, or check the input normalisation.")
            ], None


def bad_targets(setup: TrainingSetup) -> CheckOutcome:
    view = setup.class_view()
    if view is None:
        return [], _not_classes(setup)
    return targets_finding(view), None


def targets_finding(view: ClassLogits) -> list[Finding]:
    """``preflight.bad_targets`` when the targets do not fit the class logits (shared with the forward check)."""
    targets, classes, out = view.targets, view.classes, view.logits
    if not isinstance(targets, torch.Tensor):
        return []
    if targets.is_floating_point():
        if targets.shape == out.shape:
            sums = targets.sum(1)
            ok = bool((targets >= 0).all()) and bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-3))
            if ok:
                return []
            return [Finding("preflight.bad_targets", Severity.ERROR,
                            "probability targets must be non-negative and sum to 1 over classes",
                            {"target_min": float(targets.min()), "row_sum_max": float(targets.sum(1).max())},
                            fix="Normalise soft targets, or pass class indices as a LongTensor.")]
        return [Finding("preflight.bad_targets", Severity.ERROR,
                        f"targets have dtype {str(targets.dtype).replace('torch.', '')} but hold class indices",
                        {"dtype": str(targets.dtype), "shape": list(targets.shape)},
                        fix="Convert class-index targets with targets.long().")]
    valid = targets[targets != view.ignore_index]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= classes):
        low, high = int(valid.min()), int(valid.max())
        bad = int(((valid < 0) | (valid >= classes)).sum())
        return [Finding("preflight.bad_targets", Severity.ERROR,
                        f"targets range over [{low}, {high}] but the model has {classes} outputs "
                        f"(valid: 0..{classes - 1})",
                        {"target_min": low, "target_max": high, "classes": classes, "bad_count": bad}, lesson=9,
                        fix="Make the output layer as wide as the number of classes, or re-map labels to 0..C-1 "
                            "(1-based labels are a classic off-by-one).")]
    return []


def input_scale(setup: TrainingSetup) -> CheckOutcome:
    x = setup.float_input()
    if x is None:
        return [], "inputs are not floating point (e.g. token ids)"
    std, mean, peak = float(x.float().std()), float(x.float().mean()), float(x.float().abs().max())
    if peak > 20 or std > 5 or abs(mean) > 5:
        return [Finding("preflight.input_scale", Severity.WARNING,
                        f"inputs are not normalised (mean {mean:.3g}, std {std:.3g}, max |x| {peak:.3g})",
                        {"mean": mean, "std": std, "max_abs": peak},
                        fix="Standardise inputs with the training set's mean and std (raw 0-255 pixels: divide by "
                            "255, then normalise).")], None
    if std < 1e-3:
        return [Finding("preflight.input_scale", Severity.WARNING, f"inputs are nearly constant (std {std:.3g})",
                        {"mean": mean, "std": std}, fix="Check the data pipeline: the batch carries no signal.")], None
    return [], None


def mode(setup: TrainingSetup) -> CheckOutcome:
    findings = []
    if not setup.model.training:
        findings.append(Finding("preflight.mode", Severity.WARNING,
                                "the model is in eval mode: dropout is off and BatchNorm does not learn statistics",
                                {"training": False}, fix="Call model.train() before the training loop "
                                                          "(and model.eval() only for validation)."))
    norms = [name for name, m in setup.model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if norms and setup.batch_size == 1:
        findings.append(Finding("preflight.mode", Severity.ERROR,
                                "BatchNorm with a batch of 1 normalises each sample by itself",
                                {"batch_size": 1, "batchnorm_layers": norms[:10]},
                                fix="Use a batch size > 1 (better >= 16), or GroupNorm/LayerNorm instead."))
    return findings, None


CHECKS: tuple[tuple[str, Callable[[TrainingSetup], CheckOutcome]], ...] = (
    ("preflight.params_not_in_optimizer", params_not_in_optimizer),
    ("preflight.no_grad", no_grad),
    ("preflight.double_softmax", double_softmax),
    ("preflight.init_loss", init_loss),
    ("preflight.bad_targets", bad_targets),
    ("preflight.input_scale", input_scale),
    ("preflight.mode", mode),
)
