"""The examples in the learning-rate modules' docstrings, and in dldebug.arguments (their checks), run."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["dldebug.arguments", "dldebug.lr.scaling", "dldebug.lr.warmup"])
def test_doctests_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
