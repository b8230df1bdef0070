"""Locally connected (unshared-weight) convolutions for PyTorch (lesson 5).

A locally connected layer is a convolution whose filter differs at every output
location: DeepFace uses three of them because face statistics are not the same
everywhere. PyTorch has none, so this module builds one from ``Tensor.unfold``
views and ONE batched matrix multiply whose batch dimension is the output
location: ``out[l] = weight[l] @ patches[l]`` for each location ``l``. It never
forms the ``B x Cout x Cin x L x k^2`` broadcast product that popular
third-party versions do.

Output rows are processed in chunks so that the patch buffer of one chunk stays
under ``max_patch_bytes``. In eager mode (no dilation) the whole layer is one
autograd Function that walks cache-sized bands of rows, recomputes patches in
backward instead of saving them and scatters the input gradient band by band;
tracing (compile, export, ONNX), ``torch.func``, dilation and double backward use
the plain unfold + autograd formulation, which gives the same numbers.

Keras interop (:meth:`LocallyConnected2d.from_keras`, :meth:`~LocallyConnected2d.to_keras`)
lives in :mod:`dldebug.nn.locally_connected_keras`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dldebug.errors import ConfigError, InputError
from dldebug.nn.locally_connected_args import PaddingMode, check_arguments, check_weight_memory, pair, single
from dldebug.nn.locally_connected_fused import FUSED_CHUNK_BYTES, _FusedLocations, _use_fused

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["LocallyConnected1d", "LocallyConnected2d", "locally_connected2d"]

DEFAULT_MAX_PATCH_BYTES = 256 * 2**20


def _output_length(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _pad(x: Tensor, padding: tuple[int, int], padding_mode: str) -> Tensor:
    if padding == (0, 0):
        return x
    pad = (padding[1], padding[1], padding[0], padding[0])
    if padding_mode == "zeros":
        return F.pad(x, pad)
    return F.pad(x, pad, mode=padding_mode)


def _rows_per_chunk(batch: int, out_w: int, patch_size: int, itemsize: int, max_patch_bytes: int) -> int:
    row_bytes = max(1, batch * out_w * patch_size * itemsize)
    return max(1, max_patch_bytes // row_bytes)


class _LocationMatmul(torch.autograd.Function):
    """``out[l] = kernel[l] @ patches[l]`` batched over locations ``l``, with BLAS-friendly gradients.

    Plain ``torch.bmm`` would receive its output gradient as a permuted (non-contiguous) view of the
    ``(B, C_out, H_out, W_out)`` gradient, which sends CPU ``bmm`` to a per-location fallback that was
    25x slower at batch 1 (DeepFace L4); a contiguous gradient keeps every product on the batched BLAS path.
    The backward uses differentiable ops only, so double backward and ``torch.func`` work.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(patches: Tensor, kernel: Tensor) -> Tensor:  # type: ignore[override]
        return torch.bmm(kernel, patches)  # (L, C_out, K) @ (L, K, B) -> (L, C_out, B)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        patches, kernel = ctx.saved_tensors
        grad = grad.contiguous()
        grad_patches = torch.bmm(kernel.transpose(1, 2), grad) if ctx.needs_input_grad[0] else None
        grad_kernel = torch.bmm(grad, patches.transpose(1, 2)) if ctx.needs_input_grad[1] else None
        return grad_patches, grad_kernel


def locally_connected2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    dilation: tuple[int, int] = (1, 1),
    padding_mode: PaddingMode = "zeros",
    max_patch_bytes: int = DEFAULT_MAX_PATCH_BYTES,
) -> Tensor:
    """Functional locally connected 2-D layer (no shape checks: the module does them).

    Args:
        x: input of shape ``(B, C_in, H, W)``.
        weight: ``(H_out, W_out, C_out, C_in, kH, kW)``, one Conv2d weight per output location.
        bias: ``(C_out, H_out, W_out)`` or None.
        stride, padding, dilation: pairs, as in ``nn.Conv2d``.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.
        max_patch_bytes: largest patch (im2col) buffer built at once; bigger inputs are chunked by output rows.

    Returns:
        The output, ``(B, C_out, H_out, W_out)``.
    """
    out_h, out_w, c_out = weight.shape[:3]
    if x.shape[0] == 0:  # an empty batch, as nn.Conv2d allows
        out = x.new_zeros(0, c_out, out_h, out_w) + (0 if bias is None else bias)
        return out + (weight.sum() * 0)  # keeps the result connected to the weights for autograd
    x = _pad(x, padding, padding_mode)
    if _use_fused(x, weight, dilation):
        rows = _rows_per_chunk(x.shape[0], out_w, weight[0, 0, 0].numel(), x.element_size(),
                               min(max_patch_bytes, FUSED_CHUNK_BYTES))
        out = _FusedLocations.apply(x, weight, stride, rows, torch.is_grad_enabled() and weight.requires_grad)
    else:
        out = _unfold_path(x, weight, stride, dilation, max_patch_bytes)
    out = out.reshape(out_h, out_w, c_out, x.shape[0]).permute(3, 2, 0, 1)
    if bias is not None:
        out = out + bias
    return out.contiguous()


def _unfold_path(x: Tensor, weight: Tensor, stride: tuple[int, int], dilation: tuple[int, int],
                 max_patch_bytes: int) -> Tensor:
    """``(H_out*W_out, C_out, B)`` output of padded ``x`` from unfold views and autograd (any dilation, traceable)."""
    out_h, out_w, c_out, c_in, kh, kw = weight.shape
    batch = x.shape[0]
    # Batch-last (C, H, W, B): a patch row (kW taps x batch) is then one contiguous run, which makes the im2col
    # copy and its backward scatter 1.3-1.7x faster at batch 32 than the (B, C, H, W) layout.
    x = x.permute(1, 2, 3, 0).contiguous()
    patch_size = c_in * kh * kw
    span_h, span_w = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    rows = _rows_per_chunk(batch, out_w, patch_size, x.element_size(), max_patch_bytes)
    weights = torch.split(weight, rows, dim=0) if rows < out_h else (weight,)
    outputs = []
    for index, chunk_weight in enumerate(weights):
        first, n_rows = index * rows, chunk_weight.shape[0]
        top = first * stride[0]
        band = x[:, top: top + (n_rows - 1) * stride[0] + span_h]
        patches = band.unfold(1, span_h, stride[0]).unfold(2, span_w, stride[1])  # C, R, W_out, B, span_h, span_w
        if dilation != (1, 1):
            patches = patches[..., :: dilation[0], :: dilation[1]]
        # The copy into (location, C_in*kH*kW, batch) is the im2col buffer; bmm batches over locations.
        patches = patches.permute(1, 2, 0, 4, 5, 3).reshape(n_rows * out_w, patch_size, batch)
        kernel = chunk_weight.reshape(n_rows * out_w, c_out, patch_size)
        outputs.append(_LocationMatmul.apply(patches, kernel))
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


class _LocallyConnectedNd(nn.Module):
    """Shared argument checks, initialisation and repr of the 1-D and 2-D layers."""

    _ndim = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_size: tuple[int, int],
        kernel_size: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        bias: bool,
        padding_mode: str,
        max_patch_bytes: int,
        factory: dict[str, Any],
    ) -> None:
        super().__init__()
        check_arguments(in_channels, out_channels, bias, padding_mode, max_patch_bytes, factory)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.input_size, self.kernel_size, self.stride = input_size, kernel_size, stride
        self.padding, self.dilation, self.padding_mode = padding, dilation, padding_mode
        self.max_patch_bytes = max_patch_bytes
        self.output_size = self._check_geometry()
        out_h, out_w = self.output_size
        shape = (out_h, out_w, out_channels, in_channels, *kernel_size)
        check_weight_memory(type(self).__name__, shape, factory.get("dtype"))
        try:
            self.weight = nn.Parameter(torch.empty(shape, **factory))
            self.bias = nn.Parameter(torch.empty(out_channels, out_h, out_w, **factory)) if bias else None
        except (RuntimeError, AssertionError) as exc:  # e.g. device="cuda" on a machine without CUDA
            raise ConfigError(f"cannot create the weights with device={factory.get('device')!r}: "
                              f"{str(exc).splitlines()[0][:200]}") from None
        self.reset_parameters()

    def _check_geometry(self) -> tuple[int, int]:
        sizes = []
        for axis in range(2):
            size, pad = self.input_size[axis], self.padding[axis]
            span = self.dilation[axis] * (self.kernel_size[axis] - 1) + 1
            limit = {"reflect": size - 1, "circular": size}.get(self.padding_mode, pad)
            if pad > limit:
                raise ConfigError(f"padding_mode={self.padding_mode!r} needs padding <= {limit} for input size "
                                  f"{size}; got padding {pad}. Use a smaller padding or padding_mode='zeros'.")
            if size + 2 * pad < span:
                raise InputError(
                    f"{type(self).__name__}: the input ({self._describe(self.input_size)} plus padding "
                    f"{self._describe(self.padding)}) is smaller than the dilated kernel "
                    f"({self._describe(self.kernel_size)}, dilation {self._describe(self.dilation)}). "
                    "Use a larger input_size, a smaller kernel_size or more padding."
                )
            sizes.append(_output_length(size, self.kernel_size[axis], self.stride[axis], pad, self.dilation[axis]))
        return sizes[0], sizes[1]

    def _describe(self, pair: tuple[int, int]) -> str:
        return str(pair[1]) if self._ndim == 1 else f"{pair[0]}x{pair[1]}"

    def reset_parameters(self) -> None:
        """Initialise like ``nn.Conv2d``: kaiming_uniform(a=sqrt(5)) on the fan-in, i.e. U(-1/sqrt(fan_in), ..)."""
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        # kaiming_uniform_ with a=sqrt(5) gives gain*sqrt(3/fan_in) = 1/sqrt(fan_in); the 6-D weight would
        # confuse nn.init's fan computation, so the bound is applied directly.
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def _checked_input(self, x: Tensor) -> Tensor:
        """``x`` if it fits the layer (under autocast, cast to the weights' dtype), else an InputError."""
        if not isinstance(x, Tensor):
            raise InputError(f"{type(self).__name__} expects a tensor; got {type(x).__name__}.")
        if x.is_floating_point() and x.device == self.weight.device and torch.is_autocast_enabled(x.device.type):
            x = x.to(self.weight.dtype)  # autocast hands on bf16/fp16 activations; the weights stay as built
        if x.dtype != self.weight.dtype or x.device != self.weight.device:
            raise InputError(f"{type(self).__name__} has {self.weight.dtype} weights on {self.weight.device} but got "
                             f"a {x.dtype} input on {x.device}; convert it with x.to(layer.weight) or build the "
                             "layer with the input's dtype=/device=.")
        expected = 2 + self._ndim
        shape = tuple(x.shape)
        if x.dim() != expected or shape[1] != self.in_channels or shape[2:] != self._spatial(self.input_size):
            wanted = ("N", self.in_channels, *self._spatial(self.input_size))
            raise InputError(
                f"{type(self).__name__} expects input of shape ({', '.join(str(s) for s in wanted)}); got "
                f"{shape}. The layer was built for input_size={self._spatial(self.input_size)} because its "
                "weights are unshared per location; resize the input or build a layer for this size."
            )
        return x

    def _spatial(self, pair: tuple[int, int]) -> tuple[int, ...]:
        return pair[1:] if self._ndim == 1 else pair

    def _forward2d(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return locally_connected2d(x, weight, bias, self.stride, self.padding, self.dilation,
                                   self.padding_mode, self.max_patch_bytes)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, input_size={self._spatial(self.input_size)}, "
             f"kernel_size={self._spatial(self.kernel_size)}, stride={self._spatial(self.stride)}")
        if any(self.padding):
            s += f", padding={self._spatial(self.padding)}"
        if self.dilation != (1, 1):
            s += f", dilation={self._spatial(self.dilation)}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s + f", output_size={self._spatial(self.output_size)}"

    # Keras interop, implemented in locally_connected_keras to keep TensorFlow out of this module.
    @classmethod
    def from_keras(cls, layer: Any, input_size: int | Sequence[int] | None = None) -> Any:
        """Build this layer from a built ``tf_keras.layers.LocallyConnected{1,2}D`` (implementation 1, 2 or 3).

        Args:
            layer: the Keras layer, built (called once or ``layer.build(shape)``); linear activation expected.
            input_size: spatial input size; read from the layer when None.

        Returns:
            A layer whose output (channels-first) equals Keras's output (transposed to channels-first).

        Raises:
            ConfigError: the Keras layer uses an option this layer cannot express.
            MissingDependencyError: tf_keras is not installed.
        """
        from dldebug.nn.locally_connected_keras import from_keras

        return from_keras(cls, layer, input_size)

    def to_keras(self, implementation: Literal[1, 2, 3] = 1,
                 data_format: Literal["channels_last", "channels_first"] = "channels_last") -> Any:
        """Build a ``tf_keras`` LocallyConnected layer holding this layer's weights.

        Args:
            implementation: Keras's storage: 1 per-location kernels, 2 masked dense kernel, 3 sparse.
            data_format: the Keras layer's data format.

        Returns:
            A built ``tf_keras.layers.LocallyConnected1D``/``2D``.

        Raises:
            ConfigError: dilation, padding or padding_mode that Keras cannot express.
            MissingDependencyError: tf_keras is not installed.
        """
        from dldebug.nn.locally_connected_keras import to_keras

        return to_keras(self, implementation, data_format)


class LocallyConnected2d(_LocallyConnectedNd):
    """A 2-D convolution with a different filter at every output location (unshared weights).

    Args:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        input_size: ``(H, W)`` of the input; fixed, since every location owns its weights.
        kernel_size, stride, padding, dilation: as in ``nn.Conv2d`` (int or pair).
        bias: learn an unshared bias ``(C_out, H_out, W_out)``.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.
        max_patch_bytes: chunk output rows so one im2col buffer stays under this many bytes.
        device, dtype: factory arguments.

    Attributes:
        weight: ``(H_out, W_out, C_out, C_in, kH, kW)``: ``weight[i, j]`` is the Conv2d weight used at output
            location ``(i, j)``. Initialised like ``nn.Conv2d``: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``,
            ``fan_in = C_in*kH*kW``.
        bias: ``(C_out, H_out, W_out)`` or None, same bound.

    Raises:
        ConfigError: a bad argument (the message lists the allowed values).
        InputError: the input is smaller than the kernel.

    Example:
        >>> layer = LocallyConnected2d(3, 8, input_size=(10, 10), kernel_size=3, stride=2)
        >>> tuple(layer.weight.shape), tuple(layer(torch.zeros(2, 3, 10, 10)).shape)
        ((4, 4, 8, 3, 3, 3), (2, 8, 4, 4))
    """

    _ndim = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_size: int | Sequence[int],
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        bias: bool = True,
        padding_mode: PaddingMode = "zeros",
        *,
        max_patch_bytes: int = DEFAULT_MAX_PATCH_BYTES,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels, out_channels, pair(input_size, "input_size", 1), pair(kernel_size, "kernel_size", 1),
            pair(stride, "stride", 1), pair(padding, "padding", 0), pair(dilation, "dilation", 1), bias,
            padding_mode, max_patch_bytes, {"device": device, "dtype": dtype},
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layer to ``x`` of shape ``(B, C_in, H, W)``; returns ``(B, C_out, H_out, W_out)``."""
        x = self._checked_input(x)
        return self._forward2d(x, self.weight, self.bias)


class LocallyConnected1d(_LocallyConnectedNd):
    """A 1-D convolution with a different filter at every output position (unshared weights).

    Same arguments as :class:`LocallyConnected2d`, in one dimension (ints).

    Attributes:
        weight: ``(L_out, C_out, C_in, k)``: ``weight[i]`` is the Conv1d weight used at output position ``i``.
        bias: ``(C_out, L_out)`` or None.

    Example:
        >>> layer = LocallyConnected1d(2, 4, input_size=16, kernel_size=5, padding=2)
        >>> tuple(layer.weight.shape), tuple(layer(torch.zeros(3, 2, 16)).shape)
        ((16, 4, 2, 5), (3, 4, 16))
    """

    _ndim = 1

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_size: int | Sequence[int],
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        bias: bool = True,
        padding_mode: PaddingMode = "zeros",
        *,
        max_patch_bytes: int = DEFAULT_MAX_PATCH_BYTES,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels, out_channels, single(input_size, "input_size", 1), single(kernel_size, "kernel_size", 1),
            single(stride, "stride", 1), single(padding, "padding", 0), single(dilation, "dilation", 1), bias,
            padding_mode, max_patch_bytes, {"device": device, "dtype": dtype},
        )
        # Stored in the natural 1-D shape; viewed as 2-D with one row for the computation.
        out_len = self.output_size[1]
        self.weight = nn.Parameter(self.weight.detach().reshape(out_len, out_channels, in_channels,
                                                                self.kernel_size[1]))
        if self.bias is not None:
            self.bias = nn.Parameter(self.bias.detach().reshape(out_channels, out_len))

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layer to ``x`` of shape ``(B, C_in, L)``; returns ``(B, C_out, L_out)``."""
        x = self._checked_input(x)
        out_len = self.output_size[1]
        weight = self.weight.reshape(1, out_len, self.out_channels, self.in_channels, 1, self.kernel_size[1])
        bias = None if self.bias is None else self.bias.reshape(self.out_channels, 1, out_len)
        return self._forward2d(x.unsqueeze(2), weight, bias).squeeze(2)
