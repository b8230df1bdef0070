"""The examples in the compression modules' docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["dldebug.compress.compress_layers", "dldebug.compress.lowrank", "dldebug.compress.selection",
           "dldebug.compress.svd"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
