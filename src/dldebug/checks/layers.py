"""Walking a model's layers: leaf modules, forward hooks in call order, and eval mode that restores itself.

Shared by the check families (equivariance, capacity, transfer); holds no check of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from torch import fx, nn

from dldebug.model_io import call_model
from dldebug.weights import is_hf_conv1d

__all__ = ["LayerHook", "Op", "eval_mode", "layer_kind", "leaf_modules", "run_watched", "set_mode", "traced",
           "watch_layers"]

# Called after each leaf module's forward: (key, name, module, inputs, output). ``key`` is the
# module's name, suffixed "#2", "#3" ... when the same module runs again in one forward pass.
LayerHook = Callable[[str, str, nn.Module, tuple[Any, ...], Any], None]

POOLING = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
           nn.LPPool1d, nn.LPPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
           nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
SEQUENCE = (nn.RNNBase, nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer,
            nn.TransformerEncoder, nn.TransformerDecoder, nn.Transformer)


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every module without children, in registration order.

    A model that is itself a single layer is returned as ``[("(model)", model)]``.
    """
    leaves = [(name, m) for name, m in model.named_modules() if name and next(m.children(), None) is None]
    return leaves or [("(model)", model)]


@contextlib.contextmanager
def watch_layers(model: nn.Module, callback: LayerHook) -> Iterator[None]:
    """Call ``callback`` after each leaf module's forward while the context is open.

    Example:
        >>> import torch
        >>> seen = []
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
        >>> with watch_layers(net, lambda key, *_: seen.append(key)):
        ...     _ = net(torch.zeros(1, 2))
        >>> seen
        ['0', '1']
    """
    calls: dict[str, int] = {}
    handles = []
    for name, module in leaf_modules(model):
        def hook(mod: nn.Module, inputs: tuple[Any, ...], output: Any, _name: str = name) -> None:
            calls[_name] = calls.get(_name, 0) + 1
            key = _name if calls[_name] == 1 else f"{_name}#{calls[_name]}"
            callback(key, _name, mod, inputs, output)
        handles.append(module.register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode, then restore every submodule's own ``training`` flag."""
    flags = [(m, m.training) for m in model.modules()]
    set_mode(model, training=False)
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


Op = nn.Module | str  # a module, or the name of a function/method called in forward() (fx graphs)


def traced(model: nn.Module) -> fx.GraphModule | None:
    """``torch.fx.symbolic_trace(model)`` (sharing its submodules), or None where the model does not trace."""
    try:
        return fx.symbolic_trace(model)
    except Exception:  # data-dependent control flow, unsupported ops, exported graphs ...
        return None


class _NodeRecorder(fx.Interpreter):
    """Runs a traced graph node by node, calling ``callback`` after every module, function and method call."""

    def __init__(self, graph: fx.GraphModule, callback: Callable[[str, str, Op, tuple[Any, ...], Any], None]):
        super().__init__(graph)
        self.callback = callback
        self.calls: dict[str, int] = {}

    def run_node(self, n: fx.Node) -> Any:
        inputs: tuple[Any, ...] = ()
        if n.op == "call_module":  # a module's inputs, as forward hooks see them; functions get none
            inputs = tuple(self.fetch_args_kwargs_from_env(n)[0])
        output = super().run_node(n)
        op: Op
        if n.op == "call_module":
            name, op = str(n.target), self.module.get_submodule(str(n.target))
        elif n.op in ("call_function", "call_method"):
            name = n.name
            op = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", str(n.target))
        else:
            return output
        self.calls[name] = self.calls.get(name, 0) + 1
        key = name if self.calls[name] == 1 else f"{name}#{self.calls[name]}"
        self.callback(key, name, op, inputs, output)
        return output


def run_watched(model: nn.Module, graph: fx.GraphModule | None, inputs: Any,
                callback: Callable[[str, str, Op, tuple[Any, ...], Any], None]) -> Any:
    """The model's output on ``inputs`` (a tensor, a tuple of positional or a dict of keyword arguments),
    calling ``callback`` after every node of ``graph`` (every op, functional ones too), or after every
    leaf module (forward hooks) when there is no graph (the model did not trace, or takes keywords)."""
    if graph is not None and not isinstance(inputs, Mapping):
        args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
        return _NodeRecorder(graph, callback).run(*args)
    with watch_layers(model, callback):
        return call_model(model, inputs)


def set_mode(model: nn.Module, *, training: bool) -> None:
    """``model.train(training)``, tolerating modules that refuse it (``torch.export``'s modules raise)."""
    with contextlib.suppress(NotImplementedError, RuntimeError):  # an exported program has its mode baked in
        model.train(training)


def layer_kind(module: Op) -> str:
    """A short description: the class name plus the stride when it down-samples; ``name()`` for a function."""
    if isinstance(module, str):
        return f"{module}()"
    name = type(module).__name__
    if is_hf_conv1d(module):
        return f"{name} (linear)"
    stride = getattr(module, "stride", None)
    if isinstance(stride, tuple):
        stride = stride[0] if len(set(stride)) == 1 else "x".join(map(str, stride))
    if stride not in (None, 1):
        return f"{name} (stride {stride})"
    return name
