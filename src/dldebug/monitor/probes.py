"""Cheap per-module probes: which module's output or gradient went non-finite first.

A forward hook only keeps a reference to each module's latest training-mode output (no computation,
no host sync). Only when the loss turns non-finite, or when per-layer statistics are asked for, are
the kept outputs and the current gradients reduced with fused norms (``torch._foreach_norm``): a
non-finite norm means a non-finite element (or, for float32, values beyond ~1e19).

The hook is process-wide (``register_module_forward_hook``) and acts only for the modules it was
given, recognised by identity. Nothing is installed on the model itself, so ``torch.save(model)``
(a whole-module pickle), ``copy.deepcopy``, ``state_dict()``, ``.to()`` and DDP wrapping see the
model exactly as it would be without the monitor; a deep copy is simply not watched.
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook

from dldebug.model_io import iter_tensors

__all__ = ["LayerNorms", "ModuleProbe", "first_tensor", "watch_forward"]

# torch.compile warns that a process-wide hook also fires for its OptimizedModule wrapper; ours
# acts only on the modules it watches (by identity), so that extra call is ignored.
warnings.filterwarnings("ignore", message=r"Using `torch\.compile\(module\)` when there are global hooks",
                        category=UserWarning)


def first_tensor(value: Any) -> torch.Tensor | None:
    """The first floating-point tensor in a module output (a tensor, tuple, list, dict, dataclass or ModelOutput)."""
    return next((t for t in iter_tensors(value) if t.is_floating_point()), None)


class _Dispatcher:
    """The one process-wide forward hook: calls back the watchers of a module, found by its identity.

    Registered with torch on the first watch and removed when the last watcher is removed. Its
    table changes only when a watch starts or is removed (never from a garbage collector
    callback), so torch.compile, which reads the table while it traces, never sees it change
    under its feet. A watcher whose owner was garbage collected is skipped, and swept out at the
    next watch.
    """

    def __init__(self) -> None:
        self.table: dict[int, list[tuple[Any, str, int, bool]]] = {}
        self.handle: Any = None

    def __call__(self, module: nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        for owner_ref, method, index, with_kwargs in self.table.get(id(module), ()):
            owner = owner_ref()
            if owner is not None:
                rest = (args, kwargs, output) if with_kwargs else (args, output)
                getattr(owner, method)(index, module, *rest)
        return None  # a forward hook that returns a value would replace the module's output

    def add(self, owner: Any, method: str, modules: list[nn.Module], with_kwargs: bool) -> _WatchHandle:
        self._sweep()
        ref = weakref.ref(owner)
        for index, module in enumerate(modules):
            self.table.setdefault(id(module), []).append((ref, method, index, with_kwargs))
        if self.handle is None:
            self.handle = register_module_forward_hook(self, with_kwargs=True)
        return _WatchHandle(self, ref, [id(m) for m in modules])

    def remove(self, ref: Any, keys: list[int]) -> None:
        for key in keys:
            kept = [entry for entry in self.table.get(key, ()) if entry[0] is not ref]
            if kept:
                self.table[key] = kept
            else:
                self.table.pop(key, None)
        if not self.table and self.handle is not None:
            self.handle.remove()
            self.handle = None

    def _sweep(self) -> None:
        for key in list(self.table):
            kept = [entry for entry in self.table[key] if entry[0]() is not None]
            if kept:
                self.table[key] = kept
            else:
                del self.table[key]


class _WatchHandle:
    """What :func:`watch_forward` returns: ``remove()`` stops that watch (it is idempotent)."""

    def __init__(self, dispatcher: _Dispatcher, ref: Any, keys: list[int]) -> None:
        self._dispatcher, self._ref, self._keys = dispatcher, ref, keys

    def remove(self) -> None:
        if self._keys:
            self._dispatcher.remove(self._ref, self._keys)
            self._keys = []


_DISPATCHER = _Dispatcher()


def watch_forward(owner: Any, method: str, modules: list[nn.Module], *, with_kwargs: bool = False) -> _WatchHandle:
    """Call ``owner.<method>(index, module, args, [kwargs,] output)`` after each forward of ``modules[index]``.

    ``owner`` is held weakly: once it is garbage collected its watch does nothing (and is swept
    out at the next watch). The modules themselves are not touched.

    Returns:
        The watch's handle (``.remove()``).
    """
    return _DISPATCHER.add(owner, method, modules, with_kwargs)


# Parameter-free built-ins whose output is finite whenever their input is.
_FINITE_PRESERVING: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid,
    nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish, nn.Softsign, nn.Tanhshrink, nn.Softmax, nn.LogSoftmax,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Flatten, nn.Unflatten, nn.Identity,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
)


@dataclass(frozen=True)
class LayerNorms:
    """Per-module L2 norms of outputs and gradients at one step (None where not measured)."""

    step: int
    modules: tuple[str, ...]
    output_norms: tuple[float | None, ...]
    grad_norms: tuple[float | None, ...]
    param_finite: tuple[bool, ...]


def _fused_norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    if not tensors:
        return []
    try:
        return list(torch._foreach_norm([t.detach().float() if t.dtype in (torch.float16, torch.bfloat16)
                                         else t.detach() for t in tensors]))
    except RuntimeError:  # mixed devices, or a backend without the fused kernel
        return [torch.linalg.vector_norm(t.detach().float()) for t in tensors]


class ModuleProbe:
    """Keeps the latest training-mode output of a model's leaf modules for inspection.

    Args:
        model: the model to watch; its leaf modules and every module that owns parameters
            directly are watched, except parameter-free built-ins that cannot turn finite
            inputs into NaN/Inf (activations, pooling, reshaping, dropout): they only pass a
            NaN on.
        on_error: called with (where, exception) when inspecting an output fails; the
            forward pass itself is never interrupted (unless ``on_error`` raises).
    """

    def __init__(self, model: nn.Module, on_error: Callable[[str, Exception], None] | None = None) -> None:
        self.names: list[str] = []
        self.types: list[str] = []
        self._params: list[list[nn.Parameter]] = []
        self._modules: list[nn.Module] = []
        self._outputs: dict[int, torch.Tensor] = {}
        self._order: list[int] = []
        self._recomputed = False  # some outputs were first seen in a backward pass's recomputation
        self._on_error = on_error
        for name, module in model.named_modules():
            own = list(module.parameters(recurse=False))
            if not own and (next(module.children(), None) is not None or isinstance(module, _FINITE_PRESERVING)):
                continue
            self.names.append(name or type(module).__name__)
            self.types.append(type(module).__name__)
            self._params.append(own)
            self._modules.append(module)
        self.outputs_seen = 0
        self._handle: _WatchHandle | None = watch_forward(self, "_on_output", self._modules) if self._modules else None

    def _on_output(self, index: int, _module: nn.Module, _inputs: Any, output: Any) -> None:
        # Evaluation passes (no grad) are not training steps: ignore them.
        if not torch.is_grad_enabled():
            return
        try:
            tensor = output if isinstance(output, torch.Tensor) else first_tensor(output)
            if tensor is None or not tensor.is_floating_point():
                return
            if index not in self._outputs:
                self._order.append(index)
                if torch._C._current_autograd_node() is not None:  # re-run during backward (checkpointing)
                    self._recomputed = True
            self._outputs[index] = tensor
            self.outputs_seen += 1
        except Exception as exc:  # an odd output must never break the user's forward pass
            if self._on_error is None:
                raise
            self._on_error("forward hook", exc)

    def executed(self) -> Iterator[int]:
        """Indices of the modules run in this step, in execution order."""
        return iter(list(self._order))

    def clear(self) -> None:
        """Forget the kept outputs (called once per observed step)."""
        self._outputs.clear()
        self._order.clear()
        self._recomputed = False

    def remove(self) -> None:
        """Stop watching (the kept outputs are dropped)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.clear()

    def snapshot(self, step: int) -> LayerNorms:
        """Per-module norms of outputs and gradients at this step (one fused reduction, one host sync).

        Parameters are checked (exactly) only when an output or gradient norm is non-finite.
        """
        order = list(self._order)
        owners = [i for i, params in enumerate(self._params) for p in params if p.grad is not None]
        grads = [p.grad for params in self._params for p in params if p.grad is not None]
        norms = _fused_norms([self._outputs[i] for i in order] + grads)
        values = torch.stack([n.float() for n in norms]).tolist() if norms else []
        outputs = dict(zip(order, values[:len(order)], strict=True))
        grad_norms: dict[int, float] = {}
        for index, value in zip(owners, values[len(order):], strict=True):
            grad_norms[index] = math.hypot(grad_norms.get(index, 0.0), value)
        modules = range(len(self.names))
        healthy = all(math.isfinite(v) for v in values)
        return LayerNorms(
            step=step,
            modules=tuple(self.names),
            output_norms=tuple(outputs.get(i) for i in modules),
            grad_norms=tuple(grad_norms.get(i) for i in modules),
            param_finite=tuple(healthy or self._params_finite(i) for i in modules),
        )

    def _params_finite(self, index: int) -> bool:
        return all(bool(torch.isfinite(p.detach()).all()) for p in self._params[index])

    def forensics(self) -> dict[str, Any]:
        """Where the non-finite values of this step are: first output, first gradient, bad parameters.

        Exact element checks (``isfinite``), run only once a problem is known.
        """
        # Reentrant gradient checkpointing runs a block's forward without grad and again during backward,
        # after the layers that follow it: then the modules' definition order stands in for execution order.
        order = sorted(self._order) if self._recomputed else self._order
        first_output = next((i for i in order if not bool(torch.isfinite(self._outputs[i]).all())), None)
        executed = list(self._order) or list(range(len(self.names)))
        # Gradients flow backwards: the first module to receive a bad gradient is the last one run.
        first_grad = next((i for i in reversed(executed) if any(
            p.grad is not None and not bool(torch.isfinite(p.grad).all()) for p in self._params[i])), None)
        bad_params = [self.names[i] for i in range(len(self.names)) if not self._params_finite(i)]
        return {
            "output_module": None if first_output is None else self.names[first_output],
            "output_position": -1 if first_output is None else order.index(first_output),
            "grad_module": None if first_grad is None else self.names[first_grad],
            "nonfinite_params": bad_params,
            "modules_run": len(self._order),
        }
