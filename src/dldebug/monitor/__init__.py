"""Online training diagnosis: :class:`TrainingMonitor` and its framework callbacks.

The Lightning and Hugging Face callbacks live in ``dldebug.monitor.lightning``
and ``dldebug.monitor.huggingface``; they import their framework on first use.
"""

from dldebug.monitor.monitor import TrainingMonitor

__all__ = ["TrainingMonitor"]
