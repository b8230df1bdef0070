"""Which layers of a model can be factorised, and why the others are left alone.

A layer is compressed only where replacing it by two thinner layers keeps the model's meaning:

* ``nn.Linear``, transformers' ``Conv1D`` (GPT-2's projections: a linear layer with its weight
  stored transposed) and ungrouped 1x1 ``nn.Conv2d`` qualify;
* a layer whose weight (or bias) is *tied* to a parameter outside it -- GPT-2's ``lm_head``
  shares its weight with the token embedding ``transformer.wte`` -- is skipped: factorising it
  would untie the two and make the model *larger* (the embedding keeps the full matrix);
* a subclass of ``nn.Linear`` is skipped: its own forward, or its parent's, may read ``.weight``
  directly (``nn.MultiheadAttention`` does for ``out_proj``), so a replacement would never run.

Every skip is returned with its reason, so the report can say so (nothing is skipped silently).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import nn

from dldebug.arguments import name_list
from dldebug.compress.lowrank import is_factorizable
from dldebug.errors import InputError, LayerNotFoundError
from dldebug.weights import is_linear_like, parameter_owners

__all__ = ["SkippedLayer", "find_layers", "layer_names", "select_layers", "tied_parameters"]

SkipReason = Literal["tied_weights", "unsupported"]


@dataclass(frozen=True)
class SkippedLayer:
    """A linear layer left dense, and why.

    Attributes:
        name, module: the layer.
        reason: ``"tied_weights"`` (a parameter is shared with another module) or ``"unsupported"``.
        detail: one sentence for the report.
        tied_to: for ``"tied_weights"``, the other names the shared parameters are registered under.
    """

    name: str
    module: nn.Module
    reason: SkipReason
    detail: str
    tied_to: tuple[str, ...] = ()


def _candidate(module: nn.Module) -> bool:
    """A layer that computes a linear map: factorizable, or a linear layer we must explain skipping."""
    return is_factorizable(module) or is_linear_like(module)


def tied_parameters(model: nn.Module, module: nn.Module) -> tuple[str, ...]:
    """Names, outside ``module``, under which its own weight or bias is also registered.

    A module registered under several names (one layer reused) is not tied: all its names are its
    own, and replacing it replaces it everywhere.

    Example:
        >>> emb, head = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
        >>> head.weight = emb.weight
        >>> tied_parameters(nn.ModuleDict({"emb": emb, "head": head}), head)
        ('emb.weight',)
    """
    own_names = {name for name, m in model.named_modules(remove_duplicate=False) if m is module}
    owners = parameter_owners(model)
    tied: list[str] = []
    for param in module.parameters(recurse=False):
        for owner in owners.get(id(param), []):
            if owner.rpartition(".")[0] not in own_names and owner not in tied:
                tied.append(owner)
    return tuple(tied)


def _screen(model: nn.Module, name: str, module: nn.Module) -> SkippedLayer | None:
    """Why this linear layer must stay dense, or None when it can be factorised."""
    if not is_factorizable(module):
        return SkippedLayer(name, module, "unsupported",
                            f"{type(module).__name__} subclasses nn.Linear; its forward or its parent's may read "
                            ".weight directly (nn.MultiheadAttention does for out_proj), so a factor pair in its "
                            "place might never run.")
    tied = tied_parameters(model, module)
    if tied:
        return SkippedLayer(name, module, "tied_weights",
                            f"its parameters are shared with {', '.join(tied)}; factorising it would untie them "
                            "and the model would grow (the other module keeps the full matrix).", tied)
    return None


def layer_names(layers: object) -> tuple[str, ...]:
    """``layers`` as a non-empty tuple of names (one str is one name).

    Raises:
        InputError: not a name or a list of names (``layers=3``, ``[0]``), or an empty list.

    Example:
        >>> layer_names("fc"), layer_names(["0", "2"])
        (('fc',), ('0', '2'))
    """
    names = (layers,) if isinstance(layers, str) else name_list(layers, "layers", what="layer names",
                                                               integers=False)
    if not names:
        raise InputError("layers is empty, so there is nothing to compress; give layer names (model."
                         "named_modules() lists them) or layers=None for every linear layer.")
    return names


def _named(model: nn.Module, layers: object) -> list[tuple[str, nn.Module]]:
    all_names = dict(model.named_modules(remove_duplicate=False))
    out: list[tuple[str, nn.Module]] = []
    for name in layer_names(layers):
        if name not in all_names:
            close = difflib.get_close_matches(name, list(all_names), n=5)
            raise LayerNotFoundError(f"No layer named {name!r} in {type(model).__name__}; close matches: "
                                     f"{close or sorted(all_names)[:10]}.")
        module = all_names[name]
        if not is_factorizable(module):
            why = ("; it subclasses nn.Linear and may be read through .weight by its parent" if _candidate(module)
                   else "")
            raise InputError(f"Layer {name!r} is a {type(module).__name__}{why}; only nn.Linear, transformers "
                             "Conv1D and ungrouped 1x1 nn.Conv2d layers can be factorised into two thinner layers.")
        if all(m is not module for _, m in out):  # a shared layer named twice: compress once
            out.append((name, module))
    return out


def select_layers(model: nn.Module, layers: Sequence[str] | None = None
                  ) -> tuple[dict[str, nn.Module], list[SkippedLayer]]:
    """The layers to factorise (name -> module, each shared module once) and the ones left dense.

    Args:
        model: the model.
        layers: names to compress (default: every linear layer the model has).

    Returns:
        ``(chosen, skipped)``.

    Raises:
        LayerNotFoundError: a name that is not in the model (the message lists close matches).
        InputError: ``layers`` that is not a name or a non-empty list of names, a named layer that
            cannot be factorised, or a model without any linear layer.
    """
    if layers is None:
        candidates = [(name, module) for name, module in model.named_modules() if _candidate(module)]
        if not candidates:
            raise InputError(f"{type(model).__name__} has no nn.Linear, transformers Conv1D or 1x1 nn.Conv2d "
                             "layer to compress.")
    else:
        candidates = _named(model, layers)
    chosen: dict[str, nn.Module] = {}
    skipped: list[SkippedLayer] = []
    for name, module in candidates:
        reason = _screen(model, name, module)
        if reason is None:
            chosen[name] = module
        else:
            skipped.append(reason)
    return chosen, skipped


def find_layers(model: nn.Module, layers: Sequence[str] | None = None) -> dict[str, nn.Module]:
    """The factorizable layers to compress: name -> module (see :func:`select_layers` for the skipped ones)."""
    return select_layers(model, layers)[0]
