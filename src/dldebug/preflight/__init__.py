"""A one-minute pre-flight check of a training set-up: the PyTorch mistakes that waste days."""

import sys
import types
from typing import Any

from dldebug.preflight.doctor import preflight
from dldebug.preflight.setup import TrainingSetup

__all__ = ["TrainingSetup", "preflight"]


class _CallablePackage(types.ModuleType):
    """``dldebug.preflight`` is this sub-package *and* the function: once the package is imported, Python
    binds ``dldebug.preflight`` to it, so calling it must still run :func:`preflight`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return preflight(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
