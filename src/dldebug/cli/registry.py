"""Sub-commands of ``dldebug``: one module per command, registered lazily.

A command whose optional framework is missing still lists (its help names the
extra to install) and, when run, says what to install; the others keep working.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandSpec:
    """One sub-command: ``module`` defines ``command`` (a typer-annotated function)."""

    name: str
    module: str
    help: str
    requires: tuple[str, ...] = ()  # importable modules the whole command needs
    extra: str | None = None  # the dldebug extra that installs them

    def missing(self) -> str | None:
        """The first required module that is not installed, or None."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                return module
        return None


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("demo", "dldebug.cli.demo", "Train the digits CNN and write the demo report."),
    CommandSpec("show", "dldebug.cli.show", "Print (or convert to HTML) a saved report.json."),
    CommandSpec("curve", "dldebug.cli.curve", "Diagnose a loss/metric curve read from a training log."),
    CommandSpec("audit", "dldebug.cli.audit", "Audit a model: parameters, a dominant layer, equivariance."),
    CommandSpec("compress", "dldebug.cli.compress", "Compress linear layers by truncated SVD (lesson 7)."),
    CommandSpec("compare", "dldebug.cli.compare", "Diff two models layer by layer; explain the first divergence."),
    CommandSpec("labels", "dldebug.cli.labels", "Check a model's class order against an image-folder data set."),
    CommandSpec("lr", "dldebug.cli.lr", "Scale a learning rate to a new batch size, with a warm-up (lesson 11)."),
    CommandSpec("preflight", "dldebug.cli.preflight", "Check a training set-up before a long run."),
)
