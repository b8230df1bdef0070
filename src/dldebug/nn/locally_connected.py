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
from typing import TYPE_CHECKING, Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dldebug.errors import ConfigError, InputError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["LocallyConnected1d", "LocallyConnected2d", "locally_connected2d"]

PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]
_PADDING_MODES: tuple[str, ...] = get_args(PaddingMode)
DEFAULT_MAX_PATCH_BYTES = 256 * 2**20


def _pair(value: int | Sequence[int], name: str, minimum: int) -> tuple[int, int]:
    values = (value, value) if isinstance(value, int) else tuple(value)
    if len(values) != 2 or not all(isinstance(v, int) and v >= minimum for v in values):
        raise ConfigError(f"{name} must be an int >= {minimum} or a pair of them; got {value!r}.")
    return values[0], values[1]


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


FUSED_CHUNK_BYTES = 2 * 2**20  # patch buffer per step of the fused path: small enough to stay in cache
MIN_TAP_NUMEL = 8192  # smaller per-tap adds: scatter with unfold_backward instead
BATCH_MAJOR_MAX = 8  # up to this batch the fused path keeps (B, ...) layouts: larger GEMM panels than N = B


def _batch_major(x: Tensor) -> bool:
    return x.shape[0] <= BATCH_MAJOR_MAX


def _fused_layout(x: Tensor) -> Tensor:
    """``x`` as the fused path reads it: ``(B, C, H, W)`` for small batches, batch-last ``(C, H, W, B)`` otherwise."""
    return x.contiguous() if _batch_major(x) else x.permute(1, 2, 3, 0).contiguous()


def _band_patches(x: Tensor, first: int, n_rows: int, out_w: int, kernel: tuple[int, int],
                  stride: tuple[int, int], batch_major: bool, copy: bool = True) -> Tensor:
    """The im2col buffer of output rows ``first..`` of :func:`_fused_layout`'s ``x``.

    Shape ``(n_rows * out_w, B, C*kH*kW)`` when ``batch_major``, else ``(n_rows * out_w, C*kH*kW, B)``; with
    ``copy=False`` the 6-D strided view ``(n_rows, out_w, B, C, kH, kW)`` (batch-major) instead.
    """
    top, axis = first * stride[0], int(batch_major)
    band = x.narrow(1 + axis, top, (n_rows - 1) * stride[0] + kernel[0])
    patches = band.unfold(1 + axis, kernel[0], stride[0]).unfold(2 + axis, kernel[1], stride[1])
    if batch_major:  # B, C, R, W_out, kH, kW
        patches = patches.permute(2, 3, 0, 1, 4, 5)
        return patches.reshape(n_rows * out_w, x.shape[0], -1) if copy else patches
    return patches.permute(1, 2, 0, 4, 5, 3).reshape(n_rows * out_w, -1, x.shape[-1])  # from C, R, W_out, B, kH, kW


class _FusedLocations(torch.autograd.Function):
    """The whole layer (undilated) as one Function that never builds a full-size im2col buffer.

    Forward and backward walk cache-sized bands of output rows: each band's patches are copied, used and
    dropped (recomputed in backward instead of saved), and each band's patch gradient is scattered into the
    input gradient at once. Fresh multi-MiB buffers cost page faults on every step (a fresh 63 MiB patch
    gradient made one L5 batch-32 GEMM 4x slower), so this path allocates only the outputs and small bands.
    With ``create_graph`` the backward differentiates :func:`_unfold_path` instead (double backward).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, stride: tuple[int, int], rows: int,  # type: ignore[override]
                keep: bool) -> Tensor:
        out_h, out_w, c_out, _, kh, kw = weight.shape
        batch_major, xf = _batch_major(x), _fused_layout(x)
        kernel = weight.reshape(out_h * out_w, c_out, -1)
        out = x.new_empty(out_h * out_w, *((x.shape[0], c_out) if batch_major else (c_out, x.shape[0])))
        # keep (small batches, weight gradient wanted): the whole (L, B, K) buffer is kept for the weight gradient.
        saved = x.new_empty(kernel.shape[0], x.shape[0], kernel.shape[2]) if keep and batch_major else None
        for first in range(0, out_h, rows):
            n_rows = min(rows, out_h - first)
            chunk = slice(first * out_w, (first + n_rows) * out_w)
            if saved is None:
                patches = _band_patches(xf, first, n_rows, out_w, (kh, kw), stride, batch_major)
            else:
                patches = saved[chunk]
                patches.view(n_rows, out_w, x.shape[0], -1, kh, kw).copy_(
                    _band_patches(xf, first, n_rows, out_w, (kh, kw), stride, batch_major, copy=False))
            if batch_major:
                torch.bmm(patches, kernel[chunk].transpose(1, 2), out=out[chunk])
            else:
                torch.bmm(kernel[chunk], patches, out=out[chunk])
        ctx.save_for_backward(x, weight, saved)
        ctx.stride, ctx.rows = stride, rows
        return out.transpose(1, 2) if batch_major else out  # (L, C_out, B)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None]:  # type: ignore[override]
        x, weight, saved = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: differentiate the reference formulation instead
            wanted = [t for t, need in zip((x, weight), ctx.needs_input_grad[:2], strict=True) if need]
            with torch.enable_grad():
                out = _unfold_path(x, weight, ctx.stride, (1, 1), DEFAULT_MAX_PATCH_BYTES)
                grads = iter(torch.autograd.grad(out, wanted, grad, create_graph=True))
            return (next(grads) if ctx.needs_input_grad[0] else None,
                    next(grads) if ctx.needs_input_grad[1] else None, None, None, None)
        grad_x, grad_w = _fused_backward(x, weight, saved, grad.contiguous(), ctx.stride, ctx.rows,
                                         ctx.needs_input_grad)
        return grad_x, grad_w, None, None, None


def _fused_backward(x: Tensor, weight: Tensor, saved: Tensor | None, grad: Tensor, stride: tuple[int, int],
                    rows: int, needs: tuple[bool, ...]) -> tuple[Tensor | None, Tensor | None]:
    out_h, out_w, c_out, c_in, kh, kw = weight.shape
    batch_major, xf = _batch_major(x), _fused_layout(x)
    kernel = weight.reshape(out_h * out_w, c_out, -1)
    grad_x = torch.zeros_like(xf) if needs[0] else None
    grad_w = torch.empty_like(kernel) if needs[1] else None
    grad_t = grad.transpose(1, 2).contiguous() if batch_major and grad_x is not None else grad  # (L, B, C_out)
    for first in range(0, out_h, rows):
        n_rows = min(rows, out_h - first)
        chunk = slice(first * out_w, (first + n_rows) * out_w)
        if grad_w is not None:
            if saved is not None:
                torch.bmm(grad[chunk], saved[chunk], out=grad_w[chunk])
            else:
                patches = _band_patches(xf, first, n_rows, out_w, (kh, kw), stride, batch_major)
                torch.bmm(grad[chunk], patches.transpose(1, 2), out=grad_w[chunk])
        if grad_x is not None:
            if batch_major:
                grad_patches = torch.bmm(grad_t[chunk], kernel[chunk])  # (l, B, C_in*kH*kW)
                grad_patches = grad_patches.reshape(n_rows, out_w, -1, c_in, kh, kw).permute(2, 3, 0, 1, 4, 5)
            else:
                grad_patches = torch.bmm(kernel[chunk].transpose(1, 2), grad[chunk])  # (l, C_in*kH*kW, B)
                grad_patches = grad_patches.reshape(n_rows, out_w, c_in, kh, kw, -1).permute(2, 0, 1, 5, 3, 4)
            axis = 1 + int(batch_major)
            _scatter_patches(grad_x.narrow(axis, first * stride[0], (n_rows - 1) * stride[0] + kh), grad_patches,
                             axis, stride)
    return (None if grad_x is None else grad_x if batch_major else grad_x.permute(3, 0, 1, 2),
            None if grad_w is None else grad_w.reshape(weight.shape))


def _scatter_patches(band: Tensor, grad_patches: Tensor, axis: int, stride: tuple[int, int]) -> None:
    """Add ``grad_patches`` into ``band``, the input rows its patches were read from (the im2col adjoint).

    ``axis`` is the row axis of both (``band``: rows then columns; ``grad_patches``: output rows, output columns,
    the same other axes, then ``kH, kW``). One strided add per kernel tap was 1.4-1.8x faster than
    ``unfold_backward``'s two scatters at batch 32; with small taps (L4 at batch 4: 81 adds of 3.5k elements per
    output row) the per-op overhead wins and ``unfold_backward`` is 1.1-1.25x faster.
    """
    n_rows, out_w, kh, kw = grad_patches.shape[axis], grad_patches.shape[axis + 1], *grad_patches.shape[-2:]
    if grad_patches[..., 0, 0].numel() < MIN_TAP_NUMEL:
        sizes = list(band.shape)
        rows_grad = torch.ops.aten.unfold_backward(grad_patches, [*sizes[:axis], n_rows, *sizes[axis + 1:], kh],
                                                   axis + 1, kw, stride[1])
        band += torch.ops.aten.unfold_backward(rows_grad, sizes, axis, kh, stride[0])
        return
    sizes, strides = list(band.shape), list(band.stride())
    sizes[axis: axis + 2] = n_rows, out_w
    strides[axis: axis + 2] = strides[axis] * stride[0], strides[axis + 1] * stride[1]
    taps = iter(grad_patches.flatten(-2).unbind(-1))  # one view per tap; views and adds are the per-call cost here
    for i in range(kh):
        for j in range(kw):
            offset = band.storage_offset() + i * band.stride(axis) + j * band.stride(axis + 1)
            band.as_strided(sizes, strides, offset).add_(next(taps))


def _use_fused(x: Tensor, weight: Tensor, dilation: tuple[int, int]) -> bool:
    """The fused Function runs eagerly on plain tensors; tracing, torch.func and dilation take the unfold path."""
    return (not torch.compiler.is_compiling() and not torch.compiler.is_exporting() and dilation == (1, 1)
            and type(x) is torch.Tensor and type(weight) in (torch.Tensor, nn.Parameter) and x.device.type == "cpu"
            and not torch._C._are_functorch_transforms_active()
            and not torch._C._functorch.is_functorch_wrapped_tensor(x)
            and not torch._C._functorch.is_functorch_wrapped_tensor(weight))


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
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive int; got {value!r}.")
        if padding_mode not in _PADDING_MODES:
            raise ConfigError(
                f"padding_mode must be one of {', '.join(repr(m) for m in _PADDING_MODES)}; got {padding_mode!r}."
            )
        if not isinstance(max_patch_bytes, int) or max_patch_bytes < 1:
            raise ConfigError(f"max_patch_bytes must be a positive int (bytes); got {max_patch_bytes!r}.")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.input_size, self.kernel_size, self.stride = input_size, kernel_size, stride
        self.padding, self.dilation, self.padding_mode = padding, dilation, padding_mode
        self.max_patch_bytes = max_patch_bytes
        self.output_size = self._check_geometry()
        out_h, out_w = self.output_size
        self.weight = nn.Parameter(torch.empty(out_h, out_w, out_channels, in_channels, *kernel_size, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, out_h, out_w, **factory)) if bias else None
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

    def _check_input(self, x: Tensor) -> None:
        expected = 2 + self._ndim
        shape = tuple(x.shape)
        if x.dim() != expected or shape[1] != self.in_channels or shape[2:] != self._spatial(self.input_size):
            wanted = ("N", self.in_channels, *self._spatial(self.input_size))
            raise InputError(
                f"{type(self).__name__} expects input of shape ({', '.join(str(s) for s in wanted)}); got "
                f"{shape}. The layer was built for input_size={self._spatial(self.input_size)} because its "
                "weights are unshared per location; resize the input or build a layer for this size."
            )

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
            in_channels, out_channels, _pair(input_size, "input_size", 1), _pair(kernel_size, "kernel_size", 1),
            _pair(stride, "stride", 1), _pair(padding, "padding", 0), _pair(dilation, "dilation", 1), bias,
            padding_mode, max_patch_bytes, {"device": device, "dtype": dtype},
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layer to ``x`` of shape ``(B, C_in, H, W)``; returns ``(B, C_out, H_out, W_out)``."""
        self._check_input(x)
        return self._forward2d(x, self.weight, self.bias)


def _single(value: int | Sequence[int], name: str, minimum: int) -> tuple[int, int]:
    values = (value,) if isinstance(value, int) else tuple(value)
    if len(values) != 1 or not isinstance(values[0], int) or values[0] < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}; got {value!r}.")
    return (1 if name != "padding" else 0), values[0]


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
            in_channels, out_channels, _single(input_size, "input_size", 1), _single(kernel_size, "kernel_size", 1),
            _single(stride, "stride", 1), _single(padding, "padding", 0), _single(dilation, "dilation", 1), bias,
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
        self._check_input(x)
        out_len = self.output_size[1]
        weight = self.weight.reshape(1, out_len, self.out_channels, self.in_channels, 1, self.kernel_size[1])
        bias = None if self.bias is None else self.bias.reshape(self.out_channels, 1, out_len)
        return self._forward2d(x.unsqueeze(2), weight, bias).squeeze(2)
