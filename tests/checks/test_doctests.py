"""The examples in the model-check and pre-flight docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["dldebug.checks.capacity", "dldebug.checks.equivariance", "dldebug.checks.optimizers",
           "dldebug.checks.overfit", "dldebug.checks.overfit_budget", "dldebug.checks.registry",
           "dldebug.checks.transfer", "dldebug.checks.layers"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
