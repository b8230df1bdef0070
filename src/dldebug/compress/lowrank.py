"""Lesson 7's replacement: one linear layer becomes two thinner ones.

``y = W x + b`` with ``W ~ U_t S_t V_t^T`` becomes ``V_t^T`` (``t x n``, no
bias) followed by ``U_t S_t`` (``m x t``, the original bias), with no
non-linearity between them. A 1x1 convolution is the same linear map applied
at every pixel, so it becomes two 1x1 convolutions. transformers' ``Conv1D``
(GPT-2's projections) computes ``x @ W + b`` with ``W`` stored ``(in, out)``: it
is read through its transposed view and becomes two ``nn.Linear`` layers.

The pair is a :class:`LowRankPair` (an ``nn.Sequential``) that still answers ``.weight`` and
``.bias`` like the layer it replaced, because models read them outside the layer's own forward
(T5's feed-forward checks ``self.wo.weight.dtype`` at every call).
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch import nn

from dldebug.arguments import received
from dldebug.compress.svd import truncated_svd
from dldebug.errors import InputError
from dldebug.weights import is_hf_conv1d, linear_weight

__all__ = ["LowRankPair", "break_even_rank", "check_finite_weights", "factorized_module", "is_factorizable",
           "layer_bias", "layer_matrix", "layer_shape", "layer_weight", "lowrank_linear", "max_useful_rank"]


class LowRankPair(nn.Sequential):
    """Two thin layers in place of one, answering ``.weight`` / ``.bias`` as the replaced layer did.

    ``weight`` is the dense product in the replaced layer's layout (``(out, in)`` for ``nn.Linear``,
    ``(in, out)`` for transformers' ``Conv1D``, ``(out, in, 1, 1)`` for a 1x1 conv), computed when read:
    outside autograd it is cached until the factors change, under autograd it is recomputed so that
    gradients reach the factors. The forward pass never uses it. ``state_dict`` keys are those of the
    ``nn.Sequential`` (``0.weight``, ``1.weight``, ``1.bias``).
    """

    def __init__(self, first: nn.Module, second: nn.Module, *, layout: str) -> None:
        super().__init__(first, second)
        self.layout = layout  # "linear", "conv1d" (transformers Conv1D) or "conv2d"
        self._cached: tuple[tuple[Any, ...], torch.Tensor] | None = None

    @property
    def in_features(self) -> int:
        return int(layer_weight(self[0]).shape[1])

    @property
    def out_features(self) -> int:
        return int(layer_weight(self[1]).shape[0])

    @property
    def bias(self) -> torch.Tensor | None:  # type: ignore[override]
        return layer_bias(self[1])

    @property
    def weight(self) -> torch.Tensor:
        first, second = layer_weight(self[0]), layer_weight(self[1])
        tracked = torch.is_grad_enabled() and (first.requires_grad or second.requires_grad)
        cacheable = not tracked and not torch.compiler.is_compiling() and all(
            type(t) in (torch.Tensor, nn.Parameter) for t in (first, second))  # never a traced (fake) tensor
        key = (id(first), id(second), first._version, second._version, first.device, first.dtype)
        if cacheable and self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        with torch.set_grad_enabled(tracked):
            dense = second.flatten(1) @ first.flatten(1)  # (out, in)
        shaped = {"conv1d": dense.T, "conv2d": dense[:, :, None, None]}.get(self.layout, dense)
        self._cached = (key, shaped) if cacheable else None
        return shaped


def is_factorizable(module: nn.Module) -> bool:
    """True for ``nn.Linear``, transformers' ``Conv1D`` and ungrouped ``nn.Conv2d`` with a 1x1 kernel."""
    if type(module) is nn.Linear or is_hf_conv1d(module):
        return True
    return (type(module) is nn.Conv2d and tuple(module.kernel_size) == (1, 1) and module.groups == 1
            and tuple(module.dilation) == (1, 1))


def layer_weight(module: nn.Module) -> torch.Tensor:
    """The layer's weight parameter."""
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight


def layer_bias(module: nn.Module) -> torch.Tensor | None:
    """The layer's bias parameter, or None."""
    bias = getattr(module, "bias", None)
    return bias if isinstance(bias, torch.Tensor) else None


def layer_shape(module: nn.Module) -> tuple[int, int]:
    """``(m, n)``: outputs and inputs of the layer's weight matrix."""
    matrix = layer_matrix(module)
    return int(matrix.shape[0]), int(matrix.shape[1])


def layer_matrix(module: nn.Module) -> torch.Tensor:
    """The layer's weight as an ``m x n`` (outputs x inputs) matrix, detached (a transposed view for Conv1D)."""
    if is_hf_conv1d(module):
        return linear_weight(module).detach()
    weight = layer_weight(module).detach()
    return weight.reshape(weight.shape[0], -1)


def check_finite_weights(name: str, module: nn.Module) -> None:
    """Refuse a layer whose weight holds NaN or inf: no SVD can factorise it.

    Raises:
        InputError: naming the layer and how many weights are not finite.
    """
    matrix = layer_matrix(module)
    bad = int((~torch.isfinite(matrix)).sum())
    if bad:
        raise InputError(f"layer {name!r} has {bad:,} non-finite weight(s) (NaN or inf) of {matrix.numel():,}; "
                         "the SVD cannot factorise it. Fix the weights first (dldebug.preflight finds where a "
                         "training run first produces NaN), or leave the layer out with layers=[...].")


def break_even_rank(m: int, n: int) -> float:
    """``m*n / (m+n)``: at this rank two factors hold as many weights as the dense layer.

    Example:
        >>> break_even_rank(4096, 4096)
        2048.0
    """
    return m * n / (m + n)


def max_useful_rank(m: int, n: int) -> int:
    """The largest rank ``t`` with ``t*(m+n) < m*n`` (0 when none saves weights).

    Example:
        >>> max_useful_rank(4096, 4096), max_useful_rank(1, 10)
        (2047, 0)
    """
    return math.ceil(m * n / (m + n)) - 1


def factorized_module(module: nn.Module, first: torch.Tensor, second: torch.Tensor) -> LowRankPair:
    """Two layers computing ``second @ first @ x + bias`` in place of ``module``.

    Args:
        module: the ``nn.Linear``, ``Conv1D`` or 1x1 ``nn.Conv2d`` being replaced (gives bias, stride, padding).
        first: the ``t x n`` weight of the first layer (no bias).
        second: the ``m x t`` weight of the second layer (gets the original bias).

    Returns:
        ``LowRankPair(first_layer, second_layer)`` (an ``nn.Sequential``) on the module's device and
        dtype (two ``nn.Linear`` for a linear layer or a ``Conv1D``, two 1x1 convs for a conv).
    """
    weight, bias = layer_weight(module), layer_bias(module)
    rank = first.shape[0]
    has_bias = bias is not None
    if isinstance(module, nn.Linear) or is_hf_conv1d(module):
        a: nn.Module = nn.Linear(int(first.shape[1]), rank, bias=False)
        b: nn.Module = nn.Linear(rank, int(second.shape[0]), bias=has_bias)
        shape_a: tuple[int, ...] = tuple(first.shape)
        shape_b: tuple[int, ...] = tuple(second.shape)
    else:
        assert isinstance(module, nn.Conv2d)
        # Stride and padding act on the input grid, so they belong to the first conv; a padded pixel is
        # 0 after it and only the bias after the second, exactly as in the original layer.
        stride = (int(module.stride[0]), int(module.stride[1]))
        padding: str | tuple[int, int] = (module.padding if isinstance(module.padding, str)
                                          else (int(module.padding[0]), int(module.padding[1])))
        a = nn.Conv2d(module.in_channels, rank, 1, stride=stride, padding=padding,
                      padding_mode=module.padding_mode, bias=False)
        b = nn.Conv2d(rank, module.out_channels, 1, bias=has_bias)
        shape_a, shape_b = (*first.shape, 1, 1), (*second.shape, 1, 1)
    a.to(device=weight.device, dtype=weight.dtype)
    b.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        layer_weight(a).copy_(first.reshape(shape_a))
        layer_weight(b).copy_(second.reshape(shape_b))
        new_bias = layer_bias(b)
        if bias is not None and new_bias is not None:
            new_bias.copy_(bias.detach())
    layout = "conv2d" if isinstance(module, nn.Conv2d) else "conv1d" if is_hf_conv1d(module) else "linear"
    return LowRankPair(a, b, layout=layout).train(module.training)


def lowrank_linear(linear: nn.Module, rank: int) -> LowRankPair:
    """Replace ``linear`` by its rank-``rank`` truncated SVD: ``V_t^T`` then ``U_t S_t`` (+ bias).

    Uses the exact SVD (in float64 for layers up to ~4M weights), so at full rank
    ``min(m, n)`` the pair reproduces the original outputs to float precision.
    The break-even rule is not applied here (see :func:`compress_linear_layers`).

    Args:
        linear: an ``nn.Linear``, a transformers ``Conv1D`` or an ungrouped 1x1 ``nn.Conv2d``; left unchanged.
        rank: ``1 <= rank <= min(m, n)``.

    Returns:
        ``LowRankPair(Linear(n, t, bias=False), Linear(t, m))``, an ``nn.Sequential`` (two 1x1 convs for a
        conv).

    Raises:
        InputError: an unsupported layer, a rank out of range, or NaN/inf weights.

    Example:
        >>> fc = nn.Linear(8, 4)
        >>> pair = lowrank_linear(fc, 4)
        >>> x = torch.randn(3, 8)
        >>> torch.allclose(pair(x), fc(x), atol=1e-6)
        True
    """
    if not is_factorizable(linear):
        raise InputError(f"lowrank_linear needs an nn.Linear, a transformers Conv1D or an ungrouped 1x1 "
                         f"nn.Conv2d; got {type(linear).__name__}{_describe(linear)}. Larger kernels are not a "
                         "single matrix.")
    matrix = layer_matrix(linear)
    m, n = matrix.shape
    if isinstance(rank, (bool, np.bool_)) or not isinstance(rank, Integral) or not 1 <= rank <= min(m, n):
        raise InputError(f"rank must be an int in 1..{min(m, n)} for a {m} x {n} layer; got {received(rank)}.")
    check_finite_weights(type(linear).__name__, linear)
    svd = truncated_svd(matrix, int(rank), method="exact")
    return factorized_module(linear, svd.Vh, svd.U * svd.S)


def _describe(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        return f"(kernel_size={tuple(module.kernel_size)}, groups={module.groups})"
    return ""
