"""``dldebug preflight``: check a training set-up built by a ``module:factory``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import typer

from dldebug.checks.overfit import DEFAULT_STEPS
from dldebug.cli.audit import read_inputs
from dldebug.cli.common import FAIL_ON_OPTION, HTML_OPTION, JSON_OPTION, FailOn, emit, output_spec
from dldebug.errors import InputError

_KEYS = ("model", "batch", "loss_fn", "optimizer")
_EXPECTED = ("(model, batch, loss_fn, optimizer), optionally with a 5th train_step, or a dict with those keys "
             "(loss_fn may be None: the model computes its own loss from the batch's 'labels')")


def _parts(factory: str, built: Any, has_input: bool) -> dict[str, Any]:
    """The set-up's parts from what the factory returned; with --input a bare model is enough."""
    if isinstance(built, torch.nn.Module):
        if not has_input:
            raise InputError(f"{factory} returned {type(built).__name__}; expected {_EXPECTED}. A factory may return "
                             "the model alone when --input FILE gives the batch (an .npz of the model's keyword "
                             "arguments with 'labels').")
        return {"model": built, "loss_fn": None,
                "optimizer": torch.optim.Adam(built.parameters(), lr=1e-3), "default_optimizer": True}
    if isinstance(built, Mapping):
        needed = [k for k in _KEYS if k != "batch" or not has_input]
        missing = [k for k in needed if k not in built]
        if missing:
            raise InputError(f"{factory} returned a dict without {missing}; expected {_EXPECTED}.")
        return {k: built[k] for k in (*_KEYS, "train_step") if k in built}
    if isinstance(built, (tuple, list)) and len(built) in (4, 5):
        return dict(zip((*_KEYS, "train_step"), built, strict=False))
    raise InputError(f"{factory} returned {type(built).__name__}; expected {_EXPECTED}.")


def command(
    factory: str = typer.Argument(..., help="package.module:factory returning (model, batch, loss_fn, optimizer) "
                                  "or a dict with those keys (+ optional train_step); loss_fn may be None. With "
                                  "--input it may return the model alone (then Adam 1e-3 and the model's own "
                                  "loss)."),
    input: str = typer.Option(None, "--input", help="The batch instead of the factory's: a .npz/.pt of several "
                              "arrays passed as keyword arguments, targets under 'labels' (np.savez('b.npz', "
                              "input_ids=..., attention_mask=..., labels=...))."),
    output: str = typer.Option(None, "--output", help="Which tensor of a structured output the loss reads: a "
                               "name (logits) or an index (default: logits, else last_hidden_state)."),
    overfit_steps: int = typer.Option(DEFAULT_STEPS, "--overfit-steps", min=0,
                                      help="Step budget (cap) of the over-fit-one-batch test; it stops earlier "
                                           "when the loss is near zero or stalled (0: skip)."),
    as_json: bool = JSON_OPTION,
    html: Path = HTML_OPTION,
    fail_on: FailOn = FAIL_ON_OPTION,
) -> None:
    """Run the pre-flight checks on a training set-up."""
    from dldebug.io import load_factory
    from dldebug.preflight import preflight

    parts = _parts(factory, load_factory(factory), input is not None)
    if input is not None:
        parts["batch"] = read_inputs(input)
    report = preflight(parts["model"], parts["batch"], parts["loss_fn"], parts["optimizer"],
                       train_step=parts.get("train_step"), overfit_steps=overfit_steps, output=output_spec(output))
    if parts.get("default_optimizer"):
        report.meta["optimizer"] = "Adam (lr 0.001; the factory gave none)"
    emit(report, as_json=as_json, html=html, fail_on=fail_on)
