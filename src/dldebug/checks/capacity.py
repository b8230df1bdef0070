"""Where a model's parameters live, and whether one layer holds too many of them (lesson 3).

The lesson's case: a C3D feature map of 512 x 128 x 171 flattened into a fully connected layer
puts billions of parameters in one layer, and the network cannot even over-fit a small data set.
A 1x1 convolution down to one channel (or global pooling) before the FC layer fixes it.

Models built on the ``meta`` device are audited without allocating a single weight; a model that
cannot run there is audited from its parameters alone (and says so). Shared (tied) parameters are
counted once, at the module that registers them first (GPT-2's ``lm_head`` is ``wte``), and
transformers' ``Conv1D`` counts as the linear layer it is.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dldebug.checks.layers import CONVOLUTIONS, eval_mode, layer_kind, leaf_modules, watch_layers
from dldebug.errors import InputError
from dldebug.findings import Finding, Report, Severity, Table
from dldebug.model_io import call_model, describe, iter_tensors, map_tensors
from dldebug.weights import is_linear_like, linear_shape, parameter_owners, tied_groups, unique_parameter_count

__all__ = ["parameter_audit"]

DOMINANT_SHARE = 0.5  # a layer holding at least this share of all parameters dominates
# A dominant Linear fed by a flattened map is judged against the data when its size is known ...
PER_SAMPLE_LAYER = 100  # warn from this many of its parameters per training sample
HUGE_PER_SAMPLE = 10_000  # error from this many
# ... and by its size alone when it is not
BIG_LAYER = 1_000_000  # warn from this size
HUGE_LAYER = 1_000_000_000  # error from this size (the lesson's C3D head: 11.5 billion)
MIN_FIX_GAIN = 4  # flag a flattened-map layer only when the 1x1-conv fix shrinks it at least this much
OTHER_LAYER_PER_SAMPLE = 1_000  # a dominant layer not fed by a flattened map: warn from this many per sample
PARAMS_PER_SAMPLE = 1_000  # the whole model: warn from this many parameters per training sample


@dataclass(frozen=True)
class _FlatFeed:
    """A Linear layer fed by a flattened ``channels x spatial`` map."""

    channels: int
    spatial: int
    shape: str  # "512x128x171", or "512 x (21888 positions)" when no example input told the layout
    spatial_dims: int = 2  # 1 for sequences, 3 for videos: which ConvNd the fix uses


def parameter_audit(
    model: nn.Module,
    *,
    n_train_samples: int | None = None,
    example_input: Any = None,
) -> Report:
    """Count parameters per layer and flag a layer that holds most of them.

    Args:
        model: a PyTorch module; it may live on the ``meta`` device (no memory is used).
        n_train_samples: the training set size, for the parameters-per-sample ratio.
        example_input: the model's inputs (a tensor, a tuple of positional or a dict of keyword
            arguments); with it the audit knows the exact map that feeds each linear layer (run on
            the meta device when the model or the input is there).

    Returns:
        A Report with the table ``capacity.layers`` (shares of the unique parameters: they sum to 1)
        and, when one layer dominates, ``capacity.dominant_layer`` with the fix and the parameter
        count it would give; ``capacity.static_audit`` (info) when the model could not run on the
        meta device and was audited from its structure.

    Raises:
        InputError: ``n_train_samples`` is not a positive integer, or the model fails on a real
            ``example_input``.

    Example:
        >>> with torch.device("meta"):
        ...     head = nn.Sequential(nn.Conv2d(512, 512, 3, padding=1), nn.Flatten(),
        ...                          nn.Linear(512 * 128 * 171, 1024), nn.Linear(1024, 10))
        >>> report = parameter_audit(head)
        >>> report.get("capacity.dominant_layer").evidence["layer"]
        '2'
    """
    if n_train_samples is not None and (not isinstance(n_train_samples, int) or n_train_samples <= 0):
        raise InputError(f"n_train_samples must be a positive integer (the training set size); "
                         f"got {n_train_samples!r}.")
    total = unique_parameter_count(model)
    own, tied_to = _own_counts(model)
    modules = dict(model.named_modules())
    findings: list[Finding] = []
    feeds = _guessed_feeds(model)
    if example_input is not None:
        traced, static_reason = _traced_feeds(model, example_input)
        if traced is not None:
            feeds = traced
        else:
            findings.append(_static_finding(static_reason))
    rows = [(name or "(model)", layer_kind(modules[name]), count, count / total if total else 0.0,
             _note(name, feeds, tied_to)) for name, count in own.items() if count > 0 or name in tied_to]
    per_sample = total / n_train_samples if n_train_samples else None
    caption = f"{total:,} parameters" + (f"; {per_sample:,.1f} per training sample" if per_sample else "") + (
        "; shared (tied) parameters counted once" if tied_to else "")
    table = Table("capacity.layers", ("layer", "type", "params", "share", "note"), tuple(rows), caption=caption)
    if own and total:
        name = max(own, key=lambda n: own[n])
        finding = _dominant_finding(name, modules[name], own[name], total, feeds.get(name), n_train_samples)
        if finding is not None:
            findings.append(finding)
    if per_sample is not None and per_sample >= PARAMS_PER_SAMPLE:
        findings.append(Finding(
            "capacity.params_per_sample", Severity.WARNING,
            f"{total:,} parameters for {n_train_samples:,} training samples ({per_sample:,.0f} per sample).",
            {"params": total, "n_train_samples": n_train_samples, "params_per_sample": per_sample},
            fix="If the training loss does not fall, try a smaller network (or pretrained weights and more data); "
                "check it with dldebug.can_overfit on one batch.", lesson=3))
    return Report(findings, title="Parameter audit", tables=(table,),
                  meta={"params": total, "n_train_samples": n_train_samples, "params_per_sample": per_sample,
                        "tied": "; ".join(" = ".join(g) for g in tied_groups(model))})


def _own_counts(model: nn.Module) -> tuple[dict[str, int], dict[str, str]]:
    """Parameters per module, each shared tensor counted at its first owner; ``module -> 'tied to ...'``."""
    own = {name: 0 for name, _ in model.named_modules()}
    tied_to: dict[str, str] = {}
    params = dict(model.named_parameters(remove_duplicate=False))
    for names in parameter_owners(model).values():
        first = names[0]
        own[first.rpartition(".")[0]] += params[first].numel()
        for other in names[1:]:
            tied_to[other.rpartition(".")[0]] = f"{other.rpartition('.')[2]} tied to {first}"
    return own, tied_to


def _note(name: str, feeds: dict[str, _FlatFeed], tied_to: dict[str, str]) -> str:
    notes = [f"fed by a flattened {feeds[name].shape} map"] if name in feeds else []
    if name in tied_to:
        notes.append(f"{tied_to[name]} (counted there)")
    return "; ".join(notes)


def _static_finding(reason: str) -> Finding:
    return Finding("capacity.static_audit", Severity.INFO,
                   f"The model could not run on the meta device ({reason}); the audit read its structure only.",
                   {"reason": reason},
                   fix="Nothing to do for the counts (they come from the parameters); to have the exact map that "
                       "feeds each linear layer, build the model on the CPU or pass a real example input.")


def _dominant_finding(name: str, module: nn.Module, count: int, total: int, feed: _FlatFeed | None,
                      n_train: int | None) -> Finding | None:
    share = count / total
    per_sample = count / n_train if n_train else 0.0
    if share < DOMINANT_SHARE:
        return None
    if feed is not None and is_linear_like(module):
        if (per_sample < PER_SAMPLE_LAYER) if n_train else (count < BIG_LAYER):
            return None
        if count < MIN_FIX_GAIN * _fix_sizes(module, feed)[0]:
            return None  # already thin (e.g. after a 1x1 bottleneck): the fix would not shrink it
        return _flattened_map_finding(name, module, count, total, feed, per_sample)
    if per_sample < OTHER_LAYER_PER_SAMPLE:
        return None  # a big embedding or a plain MLP layer is normal unless the data is tiny
    return Finding(
        "capacity.dominant_layer", Severity.WARNING,
        f"Layer {name!r} ({layer_kind(module)}) holds {share:.0%} of all parameters ({count:,}; "
        f"{per_sample:,.0f} per training sample).",
        {"layer": name, "type": layer_kind(module), "params": count, "share": share, "total_params": total,
         "params_per_sample": per_sample},
        fix="Shrink this layer (fewer units or channels) if the training loss does not fall.", lesson=3)


def _flattened_map_finding(name: str, module: nn.Module, count: int, total: int, feed: _FlatFeed,
                           per_sample: float) -> Finding:
    out, in_features = linear_shape(module)
    bottleneck, pooled = _fix_sizes(module, feed)
    severe = per_sample >= HUGE_PER_SAMPLE if per_sample else count >= HUGE_LAYER
    return Finding(
        "capacity.dominant_layer", Severity.ERROR if severe else Severity.WARNING,
        f"Layer {name!r} ({type(module).__name__} {in_features:,} -> {out:,}) holds {count / total:.0%} of all "
        f"parameters ({count:,}): it is fed by a flattened {feed.shape} map.",
        {"layer": name, "type": type(module).__name__, "params": count, "share": count / total, "total_params": total,
         "input_map": feed.shape, "fix_params_bottleneck": bottleneck, "fix_params_global_pool": pooled,
         "total_params_after_fix": total - count + bottleneck, "params_per_sample": per_sample or None},
        fix=f"Put a 1x1 convolution down to one channel before it (nn.Conv{feed.spatial_dims}d({feed.channels}, "
            f"1, 1); with this layer {bottleneck:,} parameters), or global average pooling (this layer then "
            f"{pooled:,}).",
        lesson=3)


def _fix_sizes(module: nn.Module, feed: _FlatFeed) -> tuple[int, int]:
    """Parameters after the fix: (1x1 conv to one channel + this layer, global pooling + this layer)."""
    out = linear_shape(module)[0]
    bias = out if getattr(module, "bias", None) is not None else 0
    return (feed.channels + 1) + feed.spatial * out + bias, feed.channels * out + bias


def _is_global_pool(module: nn.Module) -> bool:
    size = getattr(module, "output_size", None)
    if size is None:
        return False
    sizes = size if isinstance(size, tuple) else (size,)
    return all(d == 1 for d in sizes)


def _guessed_feeds(model: nn.Module) -> dict[str, _FlatFeed]:
    """Without an input: a Linear right after convolutions whose width is a multiple of their channels."""
    feeds: dict[str, _FlatFeed] = {}
    channels: int | None = None
    dims = 2
    for name, module in leaf_modules(model):
        if isinstance(module, CONVOLUTIONS):
            channels, dims = module.out_channels, len(module.kernel_size)
        elif _is_global_pool(module):
            channels = None  # the Linear after it sees one value per channel, not a flattened map
        elif is_linear_like(module):
            in_features = linear_shape(module)[1]
            if channels and in_features % channels == 0 and in_features > channels:
                spatial = in_features // channels
                feeds[name] = _FlatFeed(channels, spatial, f"{channels} x ({spatial:,} positions)", dims)
            channels = None
    return feeds


def _traced_feeds(model: nn.Module, example_input: Any) -> tuple[dict[str, _FlatFeed] | None, str]:
    """Run the model once (on the meta device when it lives there) and record what feeds each linear layer.

    Returns ``(feeds, "")``, or ``(None, reason)`` when the model cannot run on the meta device.

    Raises:
        InputError: the model fails on a real (not meta) input.
    """
    tensors = list(iter_tensors(example_input))
    if not tensors:
        raise InputError(f"example_input must hold the model's input tensors; got {describe(example_input)}.")
    params = list(model.parameters())
    on_meta = any(p.is_meta for p in params) or any(t.is_meta for t in tensors)
    if on_meta:
        if not all(p.is_meta for p in params):
            model = copy.deepcopy(model).to("meta")
        example_input = map_tensors(example_input, lambda t: t.to("meta"))
    feeds: dict[str, _FlatFeed] = {}
    last_map: list[tuple[int, ...]] = []

    def record(key: str, name: str, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if is_linear_like(module) and inputs and isinstance(inputs[0], torch.Tensor):
            shape = last_map[-1] if last_map else None
            if shape and inputs[0].dim() == 2 and math.prod(shape) == inputs[0].shape[1]:
                feeds[name] = _FlatFeed(shape[0], math.prod(shape[1:]), "x".join(map(str, shape)), len(shape) - 1)
            last_map.clear()
        elif isinstance(output, torch.Tensor) and output.dim() >= 3 and math.prod(output.shape[2:]) > 1:
            last_map[:] = [tuple(output.shape[1:])]

    try:
        with eval_mode(model), torch.no_grad(), watch_layers(model, record):
            call_model(model, example_input)
    except Exception as exc:  # any failure of the user's forward pass
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        if on_meta:  # meta tensors have no values: .item(), data-dependent shapes, CPU constants ...
            return None, f"{type(exc).__name__}: {first}"
        raise InputError(f"parameter_audit: {type(model).__name__} failed on the example input "
                         f"{describe(example_input)}: {first}. Give an input the model accepts.") from None
    return feeds, ""
