"""Per-layer factorisation and its error at every rank, computed once.

For a layer ``W`` (``m x n``) a :class:`LayerSpectrum` holds factors whose
first ``t`` rows/columns give the best rank-``t`` replacement, and the
relative weight error, retained energy and (with calibration inputs ``X``)
relative output error for every ``t`` — so choosing ranks, drawing the
rank-vs-error curve and sweeping sizes never factorise again.

Plain SVD minimises the weight error ``||W - W_t||_F``. The data-aware variant
minimises the output error ``||X (W - W_t)^T||_F``: whitening by the input
covariance ``C = X^T X / N = L L^T`` gives the SVD of ``W L``, and undoing it
gives ``W_t = U_t U_t^T W`` with ``U_t`` the top eigenvectors of ``W C W^T``.
We compute that projection directly (no ``L^{-1}``, so a singular covariance,
e.g. from dead ReLUs, is harmless) and damp ``C`` by a small multiple of
identity so a small calibration set cannot over-fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dldebug.compress.lowrank import layer_bias, layer_matrix, layer_weight, max_useful_rank
from dldebug.compress.svd import SvdMethod, svd_residual, truncated_svd

__all__ = ["DAMPING", "LayerSpectrum", "analyse_layer"]

DAMPING = 0.01  # C + DAMPING * mean(diag C) * I, as GPTQ's "percdamp"


@dataclass
class LayerSpectrum:
    """One layer's factors and per-rank errors (index ``t`` = rank ``t``, ``0..k``).

    Attributes:
        name, module: the layer.
        m, n: outputs and inputs of its weight matrix.
        left: ``m x k`` second-layer weight (first ``t`` columns used at rank ``t``).
        right: ``k x n`` first-layer weight (first ``t`` rows).
        weight_error: relative Frobenius weight error per rank.
        retained_energy: fraction of the factorised spectrum's energy kept per rank.
        output_error: relative output error on the calibration inputs per rank, or None.
        data_aware: True when the factors minimise the output error.
        method: SVD algorithm used; residual: its a-posteriori residual (see ``svd_residual``).
        inputs: the calibration input rows (kept to measure the built layer), or None.
    """

    name: str
    module: nn.Module
    m: int
    n: int
    left: torch.Tensor
    right: torch.Tensor
    weight_error: torch.Tensor
    retained_energy: torch.Tensor
    output_error: torch.Tensor | None
    data_aware: bool
    method: str
    residual: float
    inputs: torch.Tensor | None

    @property
    def k(self) -> int:
        """The largest rank these factors provide."""
        return int(self.right.shape[0])

    @property
    def max_useful_rank(self) -> int:
        return max_useful_rank(self.m, self.n)

    def error_curve(self) -> torch.Tensor:
        """The error rank selection trades: output error when measured, else weight error."""
        return self.output_error if self.output_error is not None else self.weight_error

    def factors(self, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(first ``t x n``, second ``m x t``) weights at this rank, in the layer's dtype."""
        dtype = layer_weight(self.module).dtype
        return self.right[:rank].to(dtype), self.left[:, :rank].to(dtype)


def _tail_ratio(head: torch.Tensor, total: float) -> torch.Tensor:
    """sqrt((total - cumsum(head)) / total) at ranks 0..len(head)."""
    kept = torch.cat([head.new_zeros(1), head.cumsum(0)])
    if total <= 0:
        return torch.zeros_like(kept)
    return ((total - kept).clamp_min(0.0) / total).sqrt()


def _kept_ratio(head: torch.Tensor, total: float) -> torch.Tensor:
    kept = torch.cat([head.new_zeros(1), head.cumsum(0)])
    return (kept / total).clamp(0.0, 1.0) if total > 0 else torch.ones_like(kept)


def analyse_layer(name: str, module: nn.Module, k: int, *, inputs: torch.Tensor | None = None,
                  data_aware: bool = False, method: SvdMethod = "auto",
                  damping: float = DAMPING) -> LayerSpectrum:
    """Factorise one layer up to rank ``k`` and measure its error at every rank.

    Args:
        name, module: the layer (``nn.Linear`` or 1x1 ``nn.Conv2d``).
        k: the largest rank needed (``1..min(m, n)``).
        inputs: calibration input rows ``(N, n)``; enables the output-error curve.
        data_aware: minimise the output error on ``inputs`` instead of the weight error.
        method: SVD algorithm for the plain factorisation (see :mod:`dldebug.compress.svd`).
        damping: relative damping of the input covariance (data-aware only).

    Returns:
        The layer's :class:`LayerSpectrum`.
    """
    weight = layer_matrix(module)
    m, n = weight.shape
    w64 = weight.double() if m * n <= 1 << 24 else weight.float()
    weight_total = float(w64.square().sum())
    x = None if inputs is None else inputs.to(device=w64.device, dtype=w64.dtype)
    y = None if x is None else x @ w64.T  # the layer's output without bias: what the factors must keep
    if data_aware and y is not None and x is not None:
        left, right, energy_head, used, residual = _data_aware(w64, x, y, k, damping)
        energy_total = float(y.square().sum())
    else:
        svd = truncated_svd(w64, k, method=method)
        left, right, used, residual = svd.U * svd.S, svd.Vh, svd.method, svd_residual(w64, svd)
        energy_head, energy_total = svd.S.double().square(), weight_total
    # Plain SVD and the data-aware projection U_t U_t^T W both split W into mutually orthogonal rank-one
    # parts (orthonormal U), so the squared error at rank t is the total minus the parts kept.
    parts = right.double().square().sum(1) * left.double().square().sum(0)
    weight_error = _tail_ratio(parts, weight_total)
    output_error = None
    if y is not None and x is not None:
        output_error = _output_error(x, y, left, right, module)
    return LayerSpectrum(name, module, m, n, left, right, weight_error,
                         _kept_ratio(energy_head, energy_total), output_error, data_aware and y is not None,
                         used, residual, inputs)


def _data_aware(weight: torch.Tensor, x: torch.Tensor, y: torch.Tensor, k: int,
                damping: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str, float]:
    """Top eigenvectors of ``W (C + lambda I) W^T``: the whitened SVD's left vectors, without ``L^{-1}``."""
    w = weight.double()
    yd = y.double()
    rows = max(1, yd.shape[0])
    lam = damping * float(x.double().square().sum()) / (rows * w.shape[1])
    gram = yd.T @ yd / rows + lam * (w @ w.T)
    evals, evecs = torch.linalg.eigh(gram)
    u = evecs.flip(1)[:, :k]
    head = (yd @ u).square().sum(0)  # output energy kept by each direction (undamped)
    residual = float((gram @ u - u * evals.flip(0)[:k]).norm(dim=0).max() / evals.abs().max().clamp_min(1e-300))
    return u.to(weight.dtype), (u.T @ w).to(weight.dtype), head, "data-aware eigh", residual


def _output_error(x: torch.Tensor, y: torch.Tensor, left: torch.Tensor, right: torch.Tensor,
                  module: nn.Module) -> torch.Tensor:
    """Relative output error ``||X (W - W_t)^T|| / ||X W^T + b||`` at ranks 0..k."""
    raw_bias = layer_bias(module)
    bias = raw_bias.detach().to(y.dtype) if raw_bias is not None else None
    reference = y if bias is None else y + bias
    denom = float(reference.square().sum())
    # Columns of `left` are orthogonal in both variants, so each rank-one part's output energy adds up.
    parts = (x @ right.T.to(x.dtype)).square().sum(0) * left.to(x.dtype).square().sum(0)
    total = float(y.square().sum())
    kept = torch.cat([parts.new_zeros(1), parts.double().cumsum(0)])
    if denom <= 0:
        return torch.zeros_like(kept)
    return ((total - kept).clamp_min(0.0) / denom).sqrt()

