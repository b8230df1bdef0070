"""The examples in the compare modules' docstrings run (they are part of the documentation)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["dldebug.compare.api", "dldebug.compare.folding", "dldebug.compare.inputs", "dldebug.compare.keras_files",
           "dldebug.compare.layout", "dldebug.compare.metrics", "dldebug.compare.weight_memo",
           "dldebug.compare.records"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
