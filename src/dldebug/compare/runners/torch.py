"""PyTorch runner: forward hooks on every leaf module; pre-hooks feed a's inputs in shadow mode.

Only modules are seen: a functional call (``F.relu(x)`` in ``forward``) has no
hook, so its effect shows up in the next module's output. The model is called
through :mod:`dldebug.model_io` (a tensor, positional tuple or keyword dict; the
output's logits, else its first tensor), and integer tensors keep their dtype.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from dldebug.compare.inputs import ModelInputs
from dldebug.compare.records import KIND_OF_TORCH, Capture, InputSpec, LayerRecord, Layout, call_name
from dldebug.compare.weight_memo import params_digest
from dldebug.model_io import call_model, select_output
from dldebug.weights import is_hf_conv1d, linear_weight

__all__ = ["TorchRunner"]


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value:
        return _first_tensor(value[0])
    return None


def _array(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point() and tensor.dtype != torch.float32:
        tensor = tensor.float()
    return tensor.numpy().copy()


def _numpy(value: Any) -> np.ndarray | None:
    tensor = _first_tensor(value)
    return None if tensor is None else _array(tensor)


def _all_inputs(args: tuple[Any, ...]) -> list[np.ndarray]:
    return [_array(a) for a in args if isinstance(a, torch.Tensor)]


_NORM_KINDS = frozenset({"batchnorm", "layernorm"})


def kind_of(module: nn.Module) -> str:
    """The normalised kind of a module (transformers' ``Conv1D`` is a dense layer, ``ReLU6`` is ``relu6``).

    A subclass of a torch norm (ConvNeXt's ``ConvNextLayerNorm(nn.LayerNorm)``) is that norm: its weight and
    bias mean what the base class's do, whatever layout its forward handles. Other subclasses (a LoRA
    ``Linear``) may compute something else with the same weights and stay ``"other"``.
    """
    if is_hf_conv1d(module):
        return "dense"
    kind = KIND_OF_TORCH.get(type(module).__name__)
    if kind is not None:
        return kind
    for base in type(module).__mro__[1:]:
        base_kind = KIND_OF_TORCH.get(base.__name__)
        if base_kind in _NORM_KINDS and base.__module__.startswith("torch.nn"):
            return base_kind
    return "other"


def _config(module: nn.Module) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        # torch momentum weights the new batch; store Keras' convention too for the catalogue
        cfg.update(eps=module.eps, momentum=module.momentum, affine=module.affine)
    elif isinstance(module, nn.LayerNorm):
        cfg.update(eps=module.eps)
    elif isinstance(module, nn.LeakyReLU):
        cfg.update(negative_slope=module.negative_slope)
    elif isinstance(module, nn.GELU):
        cfg.update(approximate=module.approximate)
    elif kind_of(module) == "gelu":  # transformers' GELU classes: the tanh form unless named after erf
        cfg.update(approximate="none" if type(module).__name__ == "GELUActivation" else "tanh")
    elif isinstance(module, nn.modules.conv._ConvNd):
        padding = module.padding if isinstance(module.padding, str) else tuple(module.padding)
        cfg.update(stride=tuple(module.stride), padding=padding, kernel_size=tuple(module.kernel_size),
                   dilation=tuple(module.dilation), groups=module.groups)
    elif isinstance(module, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        cfg.update(padding=module.padding, count_include_pad=module.count_include_pad)
    elif isinstance(module, nn.Upsample):
        cfg.update(mode=module.mode, align_corners=bool(module.align_corners))
    elif isinstance(module, (nn.LSTM, nn.GRU)):
        cfg.update(gate_order="ifgo" if isinstance(module, nn.LSTM) else "rzn", two_biases=module.bias,
                   hidden_size=module.hidden_size)
    return cfg


def _params(module: nn.Module) -> dict[str, np.ndarray]:
    tensors: dict[str, torch.Tensor] = dict(module.named_parameters(recurse=False))
    if is_hf_conv1d(module):
        tensors["weight"] = linear_weight(module)  # (in, out) stored; PyTorch's (out, in) compared
    tensors.update((k, v) for k, v in module.named_buffers(recurse=False) if v is not None and v.is_floating_point())
    return {k: v.detach().cpu().float().numpy() for k, v in tensors.items()}


class TorchRunner:
    """Captures each leaf module of an ``nn.Module`` (in eval mode, under ``no_grad``)."""

    framework = "torch"
    layout: Layout = "channels_first"

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.leaves = {name: m for name, m in model.named_modules() if name and not any(True for _ in m.children())}

    def input_specs(self) -> list[InputSpec] | None:
        return None

    def _forward(self, inputs: ModelInputs) -> np.ndarray:
        training = [m for m in self.model.modules() if m.training]  # restored exactly (a mixed state too)
        if training:
            _set_training(self.model, False)
        # float inputs in the model's own float dtype: a bfloat16 model gets bfloat16 inputs
        dtype = next((p.dtype for p in self.model.parameters() if p.is_floating_point()), torch.float32)
        tensors = [torch.from_numpy(np.require(a, requirements="C")) for a in inputs.arrays]
        tensors = [t.to(dtype) if t.is_floating_point() and t.dtype != dtype else t for t in tensors]
        args: Any = tensors[0] if inputs.style == "single" else tuple(tensors)
        if inputs.style == "named":
            args = dict(zip(inputs.names, tensors, strict=True))
        try:
            with torch.no_grad():
                out = call_model(self.model, args)
        finally:
            for module in training:
                module.training = True
        return _array(select_output(out, tool="compare_models"))

    def capture(self, x: ModelInputs) -> Capture:
        records: list[LayerRecord] = []
        calls: dict[str, int] = {}

        def hook(name: str, module: nn.Module) -> Any:
            def record(_m: nn.Module, args: tuple[Any, ...], output: Any) -> None:
                kind = kind_of(module)
                calls[name] = calls.get(name, 0) + 1
                params = _params(module)
                rec = LayerRecord(call_name(name, calls[name]), kind, type(module).__name__, self.framework,
                                  "channels_first", output=_numpy(output), input=_numpy(args), params=params,
                                  config=_config(module), inputs=_all_inputs(args), params_digest=params_digest(params))
                if kind == "flatten" and rec.input is not None:
                    rec.flatten_from = tuple(rec.input.shape[1:])
                records.append(rec)
            return record

        with _hooks(self.leaves, hook, pre=False):
            output = self._forward(x)
        return Capture(self.framework, "channels_first", records, output)

    def run_layers(self, x: ModelInputs, feeds: dict[str, list[np.ndarray]],
                   spans: dict[str, str] | None = None) -> dict[str, np.ndarray]:
        """One forward pass in which each fed module gets ``feeds[name]`` instead of its own tensor inputs."""
        outputs: dict[str, np.ndarray] = {}
        calls: dict[str, int] = {}

        def hook(name: str, module: nn.Module) -> Any:
            def replace(_m: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
                calls[name] = calls.get(name, 0) + 1
                feed = feeds.get(call_name(name, calls[name]))
                if feed is None:
                    return None
                replaced, fed = list(args), iter(feed)
                for i, arg in enumerate(args):
                    if isinstance(arg, torch.Tensor):
                        value = next(fed, None)
                        if value is None:
                            break
                        replaced[i] = torch.from_numpy(np.array(value, copy=True)).to(arg.dtype)
                return tuple(replaced)
            return replace

        def keep(name: str, module: nn.Module) -> Any:
            def record(_m: nn.Module, _args: tuple[Any, ...], output: Any) -> None:
                value = _numpy(output)
                if value is not None:
                    outputs[call_name(name, calls.get(name, 1))] = value
            return record

        # every leaf gets the counting pre-hook, so a shared module's n-th call finds its n-th feed
        with _hooks(self.leaves, hook, pre=True), _hooks(self.leaves, keep, pre=False):
            self._forward(x)
        return outputs


def _set_training(model: nn.Module, mode: bool) -> None:
    with contextlib.suppress(NotImplementedError):  # an exported GraphModule refuses train(); eval already
        model.train(mode)


@contextlib.contextmanager
def _hooks(modules: dict[str, nn.Module], factory: Any, *, pre: bool) -> Iterator[None]:
    handles = []
    try:
        for name, module in modules.items():
            fn = factory(name, module)
            handles.append(module.register_forward_pre_hook(fn) if pre else module.register_forward_hook(fn))
        yield
    finally:
        for handle in handles:
            handle.remove()
