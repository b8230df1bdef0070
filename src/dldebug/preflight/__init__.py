"""A one-minute pre-flight check of a training set-up: the PyTorch mistakes that waste days."""

from dldebug.preflight.doctor import preflight
from dldebug.preflight.setup import TrainingSetup

__all__ = ["TrainingSetup", "preflight"]
