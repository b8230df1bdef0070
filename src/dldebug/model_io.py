"""The one model-call layer: how every dldebug tool calls a model on a batch and reads what it returns.

Real models take more than one tensor and return more than one: a Hugging Face model takes a
dict (or ``BatchEncoding``) of keyword arguments and returns a ``ModelOutput`` holding ``loss``,
``logits`` and hidden states. Every tool goes through this module, so each accepts

* a batch that is a tensor, a tuple/list (``(inputs, targets)``, or ``(*inputs, targets)``) or a
  mapping (keyword arguments; the targets under ``"labels"``);
* an output that is a tensor, a tuple/list, a dict, a dataclass or a ``ModelOutput``, from which
  the tensor a tool needs is picked: ``logits``, else ``last_hidden_state``, else the first tensor
  -- or what the user's ``output=`` names (a key/attribute name, an index, or a callable);
* ``loss_fn=None``: the model computes its own loss (``labels`` in the batch -> ``outputs.loss``).

transformers is never imported here: its types are read by duck typing (mappings, dataclasses).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dldebug.errors import InputError

__all__ = [
    "TARGET_KEYS",
    "Batch",
    "LossFn",
    "OutputSpec",
    "call_model",
    "describe",
    "iter_tensors",
    "map_tensors",
    "model_loss",
    "output_items",
    "parameters_device",
    "read_loss",
    "select_output",
]

OutputSpec = str | int | Callable[[Any], Any] | None
LossFn = Callable[..., torch.Tensor]
TARGET_KEYS = ("labels", "label")  # where a dict batch keeps its targets (Hugging Face: "labels")
PREFERRED_OUTPUTS = ("logits", "last_hidden_state")


def describe(value: Any) -> str:
    """A short description of a batch or an output for error messages: type, keys, shapes."""
    if isinstance(value, torch.Tensor):
        return f"Tensor of shape {tuple(value.shape)} ({str(value.dtype).removeprefix('torch.')})"
    items = output_items(value)
    if items is not None and not isinstance(value, (tuple, list)):
        keys = ", ".join(f"{k}: {describe_short(v)}" for k, v in items[:8])
        return f"{type(value).__name__} with {{{keys}}}" if keys else f"empty {type(value).__name__}"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(describe_short(v) for v in value[:8])
        return f"{type(value).__name__} of {len(value)} ({inner})"
    return type(value).__name__


def describe_short(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"Tensor{tuple(value.shape)}"
    return type(value).__name__


def output_items(value: Any) -> list[tuple[str, Any]] | None:
    """``(name, value)`` pairs of a structured output (mapping, ModelOutput, dataclass, tuple), else None.

    ``None`` entries are left out: a ``ModelOutput`` lists the fields the model did not fill as None.
    """
    if isinstance(value, Mapping):
        return [(str(k), v) for k, v in value.items() if v is not None]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not None]
    if isinstance(value, (tuple, list)):
        return [(str(i), v) for i, v in enumerate(value) if v is not None]
    return None


def _lookup(output: Any, name: str | int) -> Any:
    """``output[name]`` for mappings and sequences, ``output.name`` otherwise; KeyError when absent."""
    if isinstance(name, int):
        if isinstance(output, (tuple, list)):
            return output[name]
        items = output_items(output)
        if items is not None:
            return items[name][1]
        raise KeyError(name)
    if isinstance(output, Mapping):
        if name in output and output[name] is not None:
            return output[name]
        raise KeyError(name)
    value = getattr(output, name, None)
    if value is None:
        raise KeyError(name)
    return value


def select_output(output: Any, spec: OutputSpec = None, *, prefer: Sequence[str] = PREFERRED_OUTPUTS,
                  tool: str = "dldebug") -> torch.Tensor:
    """The tensor a tool reads from a model's output.

    Args:
        output: what the model returned.
        spec: ``None`` (automatic: a tensor itself; else ``prefer``'s names in order; else the first
            tensor), a key/attribute name, an index, or a callable ``output -> tensor``.
        prefer: the names tried in order when ``spec`` is None.
        tool: the public function asking, for the error message.

    Raises:
        InputError: nothing in the output is a tensor, or ``spec`` names nothing there.

    Example:
        >>> select_output({"loss": torch.tensor(0.5), "logits": torch.zeros(2, 3)}).shape
        torch.Size([2, 3])
        >>> select_output((torch.zeros(1), torch.ones(4)), 1).shape
        torch.Size([4])
    """
    if callable(spec):
        picked = spec(output)
        if not isinstance(picked, torch.Tensor):
            raise InputError(f"{tool}: output={getattr(spec, '__name__', spec)!r} returned {describe(picked)}, "
                             "expected a tensor.")
        return picked
    if spec is not None:
        try:
            picked = _lookup(output, spec)
        except (KeyError, IndexError, TypeError):
            raise InputError(f"{tool}: output={spec!r} is not in the model's output, which is {describe(output)}. "
                             "Give output= one of its names, an index, or a callable.") from None
        if not isinstance(picked, torch.Tensor):
            raise InputError(f"{tool}: output={spec!r} is {describe(picked)}, expected a tensor.")
        return picked
    if isinstance(output, torch.Tensor):
        return output
    items = output_items(output)
    if items:
        by_name = dict(items)
        for name in prefer:
            if isinstance(by_name.get(name), torch.Tensor):
                return by_name[name]
        for name, value in items:
            if name != "loss" and isinstance(value, torch.Tensor):
                return value
    raise InputError(f"{tool} needs a tensor from the model's output, but it returned {describe(output)}. "
                     "Pass output= (a key or attribute name, an index, or a callable) to say which tensor to use.")


def read_loss(output: Any, *, tool: str = "dldebug") -> torch.Tensor:
    """The loss a model computed itself: ``output.loss`` / ``output["loss"]``, or a scalar first element.

    Raises:
        InputError: the output holds no loss.
    """
    if isinstance(output, torch.Tensor) and output.numel() == 1:
        return output
    with contextlib.suppress(KeyError, IndexError, TypeError):
        value = _lookup(output, "loss")
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor) and output[0].numel() == 1:
        return output[0]
    raise InputError(f"{tool}: loss_fn=None means the model computes its own loss, but its output is "
                     f"{describe(output)} with no 'loss'. Put the targets in the batch under 'labels' "
                     "(Hugging Face models then return outputs.loss) or pass a loss_fn.")


def call_model(model: Callable[..., Any], inputs: Any) -> Any:
    """Call ``model`` on inputs: a mapping -> keyword arguments, a tuple/list -> positional, else one argument."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def iter_tensors(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor inside nested tuples, lists, mappings and dataclasses, in order."""
    if isinstance(value, torch.Tensor):
        yield value
        return
    items = output_items(value)
    if items is not None:
        for _, item in items:
            yield from iter_tensors(item)


def map_tensors(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``value`` with ``fn`` applied to every tensor in nested tuples, lists and mappings (types kept)."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, Mapping):
        mapped = {k: map_tensors(v, fn) for k, v in value.items()}
        try:
            return type(value)(mapped)  # type: ignore[call-arg]  # dict, OrderedDict, BatchEncoding ...
        except Exception:
            return mapped
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
        return type(value)(*(map_tensors(v, fn) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(map_tensors(v, fn) for v in value)
    return value


@dataclass(frozen=True)
class Batch:
    """One batch split into what the model is called on and the targets the loss compares with.

    Attributes:
        inputs: a tensor (one argument), a tuple (positional arguments) or a dict (keyword arguments).
        targets: what ``loss_fn(output, targets)`` takes; None when the model computes its own loss
            (then dict inputs keep their ``labels``).
    """

    inputs: Any
    targets: Any = None

    @classmethod
    def from_user(cls, batch: Any, *, loss_fn: LossFn | None = None, tool: str = "dldebug",
                  needs_targets: bool = True) -> Batch:
        """Split a user's batch.

        * ``(x, y)`` -> model(x), targets y; ``(x1, x2, ..., y)`` -> model(x1, x2, ...), targets y;
        * a mapping -> model(**batch); with a ``loss_fn`` its ``"labels"`` are the targets (and are not
          passed to the model); with ``loss_fn=None`` the model gets them and computes the loss;
        * a tensor alone -> model(x), no targets (only where ``needs_targets`` is False or
          ``loss_fn`` is None).

        Raises:
            InputError: a batch of another type, an empty one, or a missing target.
        """
        if isinstance(batch, Mapping):
            if not batch:
                raise InputError(f"{tool}: the batch is an empty {type(batch).__name__}; give the model's keyword "
                                 "arguments, e.g. {'input_ids': ids, 'attention_mask': mask, 'labels': y}.")
            inputs = dict(batch)
            if loss_fn is None:
                return cls(inputs, next((inputs[k] for k in TARGET_KEYS if k in inputs), None))
            key = next((k for k in TARGET_KEYS if k in inputs), None)
            if key is None:
                if needs_targets:
                    raise InputError(f"{tool}: a dict batch with a loss_fn needs its targets under 'labels'; got "
                                     f"keys {sorted(map(str, inputs))}. Add batch['labels'] = targets, or pass "
                                     "loss_fn=None if the model computes its own loss.")
                return cls(inputs, None)
            targets = inputs.pop(key)
            return cls(inputs, targets)
        if isinstance(batch, torch.Tensor):
            if needs_targets and loss_fn is not None:
                raise InputError(f"{tool}: got one tensor of shape {tuple(batch.shape)} as the batch; with a "
                                 "loss_fn the batch must hold targets too: (inputs, targets), e.g. (x, y).")
            return cls(batch, None)
        if isinstance(batch, (tuple, list)) and not hasattr(batch, "_fields"):
            if len(batch) == 0:
                raise InputError(f"{tool}: the batch is an empty {type(batch).__name__}; give (inputs, targets).")
            if len(batch) == 1:
                if needs_targets and loss_fn is not None:
                    raise InputError(f"{tool}: the batch holds only {describe(batch)}; give (inputs, targets).")
                return cls(batch[0], None)
            if len(batch) == 2:
                return cls(batch[0], batch[1])
            return cls(tuple(batch[:-1]), batch[-1])
        raise InputError(f"{tool}: a batch must be (inputs, targets), a tensor, or a dict of the model's keyword "
                         f"arguments; got {describe(batch)}.")

    def call(self, model: Callable[..., Any]) -> Any:
        """The model's raw output on this batch's inputs."""
        return call_model(model, self.inputs)

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor of the inputs and targets."""
        return [*iter_tensors(self.inputs), *iter_tensors(self.targets)]

    @property
    def size(self) -> int:
        """The batch size: the first dimension of the first input tensor (1 when none has one)."""
        for tensor in iter_tensors(self.inputs):
            if tensor.dim() > 0:
                return int(tensor.shape[0])
        return 1

    def main_input(self) -> torch.Tensor | None:
        """The first input tensor (the image batch, ``input_ids`` ...), or None."""
        return next(iter_tensors(self.inputs), None)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        """A batch with ``fn`` applied to every tensor (inputs and targets)."""
        return Batch(map_tensors(self.inputs, fn), map_tensors(self.targets, fn))

    def to(self, device: torch.device | str) -> Batch:
        return self.map(lambda t: t.to(device))

    def take(self, rows: int | slice | torch.Tensor) -> Batch:
        """The sub-batch of the given rows, taken from every tensor whose first dimension is the batch."""
        size = self.size
        index = slice(rows) if isinstance(rows, int) else rows

        def pick(t: torch.Tensor) -> torch.Tensor:
            return t[index] if t.dim() > 0 and t.shape[0] == size else t
        return self.map(pick)


def model_loss(model: Callable[..., Any], batch: Batch, loss_fn: LossFn | None, *, output: OutputSpec = None,
               tool: str = "dldebug") -> tuple[torch.Tensor, Any]:
    """``(scalar loss, raw output)`` of ``model`` on ``batch``.

    ``loss_fn=None``: the model's own loss (``outputs.loss``). Otherwise
    ``loss_fn(select_output(raw, output), batch.targets)``.

    Raises:
        InputError: the loss is not a scalar tensor, or no loss can be read.
    """
    raw = batch.call(model)
    if loss_fn is None:
        loss = read_loss(raw, tool=tool)
    else:
        loss = loss_fn(select_output(raw, output, tool=tool), batch.targets)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        got = f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise InputError(f"{tool}: the loss must be a scalar tensor; got {got}. Use reduction='mean'.")
    return loss.reshape(()), raw


def parameters_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")
