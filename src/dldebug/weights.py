"""Parameters as a model really holds them: shared (tied) tensors counted once, and every linear map.

Language models tie the output projection to the token embedding (GPT-2's ``lm_head.weight`` *is*
``transformer.wte.weight``); a per-module count sees that tensor twice. Hugging Face's GPT-2 also
writes its projections as ``transformers.pytorch_utils.Conv1D`` -- a linear layer whose weight is
stored transposed, ``(in_features, out_features)``. Tools that count, audit or compress parameters
read both through this module. transformers is never imported: Conv1D is recognised by duck typing.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

__all__ = [
    "is_hf_conv1d",
    "is_linear_like",
    "linear_shape",
    "linear_weight",
    "parameter_owners",
    "tied_groups",
    "unique_parameter_count",
]


def is_hf_conv1d(module: nn.Module) -> bool:
    """True for transformers' ``Conv1D`` (GPT-2's projections): ``y = x @ W + b`` with ``W`` of shape ``(in, out)``."""
    weight = getattr(module, "weight", None)
    return (type(module).__name__ == "Conv1D" and not isinstance(module, nn.Conv1d)
            and isinstance(weight, torch.Tensor) and weight.dim() == 2
            and getattr(module, "nf", weight.shape[1]) == weight.shape[1])


def is_linear_like(module: nn.Module) -> bool:
    """``nn.Linear`` (and subclasses) or transformers' ``Conv1D``."""
    return isinstance(module, nn.Linear) or is_hf_conv1d(module)


def linear_weight(module: nn.Module) -> torch.Tensor:
    """The ``(out_features, in_features)`` weight of a linear-like layer (a transposed view for Conv1D)."""
    if is_hf_conv1d(module):
        return module.weight.t()  # type: ignore[union-attr, operator]
    if isinstance(module, nn.Linear):
        return module.weight
    raise TypeError(f"{type(module).__name__} is not a linear layer")


def linear_shape(module: nn.Module) -> tuple[int, int]:
    """``(out_features, in_features)`` of a linear-like layer."""
    out_features, in_features = linear_weight(module).shape
    return int(out_features), int(in_features)


def _named_parameters_all(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    yield from model.named_parameters(remove_duplicate=False)


def parameter_owners(model: nn.Module) -> dict[int, list[str]]:
    """``id(parameter) -> [every name it is registered under]``, in registration order."""
    owners: dict[int, list[str]] = {}
    for name, param in _named_parameters_all(model):
        owners.setdefault(id(param), []).append(name)
    return owners


def tied_groups(model: nn.Module) -> list[list[str]]:
    """Groups of parameter names that share one tensor (e.g. ``[transformer.wte.weight, lm_head.weight]``)."""
    return [names for names in parameter_owners(model).values() if len(names) > 1]


def unique_parameter_count(model: nn.Module, *, trainable_only: bool = False) -> int:
    """The number of parameter values the model really holds: each shared tensor counted once.

    Example:
        >>> emb = nn.Embedding(10, 4)
        >>> head = nn.Linear(4, 10, bias=False)
        >>> head.weight = emb.weight
        >>> unique_parameter_count(nn.ModuleDict({"emb": emb, "head": head}))
        40
    """
    seen: set[int] = set()
    total = 0
    for _, param in _named_parameters_all(model):
        if id(param) in seen or (trainable_only and not param.requires_grad):
            continue
        seen.add(id(param))
        total += param.numel()
    return total
