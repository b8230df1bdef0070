"""Runners: run one model and capture every layer's output as :class:`LayerRecord`s.

``runner_for(model)`` picks the runner from the model's type; optional frameworks
are imported only by the runner that needs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dldebug.compare.inputs import ModelInputs
from dldebug.compare.records import Capture, InputSpec, Layout
from dldebug.errors import InputError

__all__ = ["Runner", "runner_for"]


class Runner(Protocol):
    """Runs one model: a full capture, and single layers fed chosen inputs (shadow mode)."""

    framework: str
    layout: Layout

    def input_specs(self) -> list[InputSpec] | None:
        """The inputs the model declares (names, shapes in its own layout, dtypes), or None if it declares none."""

    def capture(self, x: ModelInputs) -> Capture:
        """Run ``x`` (bound to this model: its order, layout and dtypes) and record every layer."""

    def run_layers(self, x: ModelInputs, feeds: dict[str, list[np.ndarray]],
                   spans: dict[str, str] | None = None) -> dict[str, np.ndarray]:
        """Each named layer's output when fed ``feeds[name]`` (its data inputs) instead of its own.

        ``spans[name] = last`` asks for the output of ``last``, computed from ``name``'s fed input through
        the layers in between (torch runners run the whole model once, so every later layer is returned).
        """


def runner_for(model: Any) -> Runner:
    """The runner for a PyTorch module, an ONNX model (proto or ``OnnxModel``) or a Keras model.

    A path (``.onnx``, ``.pt2``, ``.keras``/``.h5``) or ``module:factory`` string is loaded first.

    Raises:
        InputError: the object is none of these.
    """
    import torch

    if isinstance(model, (str, Path)):
        from dldebug.compare.loading import load_compare_model

        model = load_compare_model(model)
    from dldebug.compare.runners.torch_graph import TorchGraphRunner, has_module_stack

    if isinstance(model, torch.fx.GraphModule) and has_module_stack(model):
        return TorchGraphRunner(model)
    if isinstance(model, torch.nn.Module):
        from dldebug.compare.runners.torch import TorchRunner

        return TorchRunner(model)
    module = type(model).__module__
    if type(model).__name__ in ("OnnxModel", "ModelProto"):
        from dldebug.compare.runners.onnx import OnnxRunner

        return OnnxRunner(model)
    if module.startswith(("keras", "tf_keras", "tensorflow")):
        from dldebug.compare.runners.keras import KerasRunner

        return KerasRunner(model)
    raise InputError(f"compare_models needs a torch.nn.Module, an ONNX model or a Keras model; got "
                     f"{type(model).__module__}.{type(model).__name__}. Load files with "
                     "dldebug.compare.load_compare_model(path).")
