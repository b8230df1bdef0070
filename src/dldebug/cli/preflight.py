"""``dldebug preflight``: check a training set-up built by a ``module:factory``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import typer

from dldebug.cli.common import FAIL_ON_OPTION, HTML_OPTION, JSON_OPTION, FailOn, emit
from dldebug.errors import InputError

_KEYS = ("model", "batch", "loss_fn", "optimizer")


def command(
    factory: str = typer.Argument(..., help="package.module:factory returning (model, batch, loss_fn, optimizer) "
                                  "or a dict with those keys (+ optional train_step)."),
    overfit_steps: int = typer.Option(100, "--overfit-steps", help="Steps of the over-fit-one-batch test (0: skip)."),
    as_json: bool = JSON_OPTION,
    html: Path = HTML_OPTION,
    fail_on: FailOn = FAIL_ON_OPTION,
) -> None:
    """Run the pre-flight checks on a training set-up."""
    from dldebug.io import load_factory
    from dldebug.preflight import preflight

    built = load_factory(factory)
    if isinstance(built, Mapping):
        missing = [k for k in _KEYS if k not in built]
        if missing:
            raise InputError(f"{factory} returned a dict without {missing}; expected keys {list(_KEYS)} "
                             "(+ optional 'train_step').")
        parts = {k: built[k] for k in (*_KEYS, "train_step") if k in built}
    elif isinstance(built, (tuple, list)) and len(built) in (4, 5):
        parts = dict(zip((*_KEYS, "train_step"), built, strict=False))
    else:
        raise InputError(f"{factory} returned {type(built).__name__}; expected (model, batch, loss_fn, optimizer), "
                         "optionally with a 5th train_step, or a dict with those keys.")
    report = preflight(parts["model"], parts["batch"], parts["loss_fn"], parts["optimizer"],
                       train_step=parts.get("train_step"), overfit_steps=overfit_steps)
    emit(report, as_json=as_json, html=html, fail_on=fail_on)
