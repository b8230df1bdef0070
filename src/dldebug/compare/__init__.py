"""Cross-framework model diff (lesson 10): runners -> paired layers -> judgement -> report.

``compare_models(a, b)`` runs two models (PyTorch, ONNX in onnxruntime, Keras)
on the same input, pairs their layers even when names differ, measures each
pair, names the first divergent layer and explains it from a catalogue of
known framework-default mismatches (BatchNorm eps, LeakyReLU slope, flatten
order ...).
"""

from __future__ import annotations

from dldebug.compare.api import compare_models
from dldebug.compare.comparison import Comparison, LayerComparison
from dldebug.compare.loading import load_compare_model

__all__ = ["Comparison", "LayerComparison", "compare_models", "load_compare_model"]
