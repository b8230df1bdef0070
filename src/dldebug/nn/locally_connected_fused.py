"""The eager CPU fast path of the locally connected layers: one fused autograd Function.

It walks cache-sized bands of output rows, writes the output and the weight
gradient in place, recomputes patches in backward instead of saving a full
im2col buffer, and scatters the input gradient band by band. Tracing (compile,
export, ONNX), ``torch.func``, dilation and double backward use the plain
unfold + autograd formulation in :mod:`dldebug.nn.locally_connected`, which
gives the same numbers (tested against a naive float64 loop).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

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
                from dldebug.nn.locally_connected import DEFAULT_MAX_PATCH_BYTES, _unfold_path  # circular at import

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
