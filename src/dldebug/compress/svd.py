"""Truncated SVD of a weight matrix, with the algorithm chosen by size.

Three ways to get the top ``k`` singular triplets of an ``m x n`` matrix:

- ``"exact"``: ``torch.linalg.svd`` (LAPACK gesdd). Exact to working precision;
  ~100 s for VGG's fc6 (4096 x 25088) on 2 cores.
- ``"gram"``: eigendecomposition of the smaller Gram matrix ``A A^T`` (or
  ``A^T A``), then ``V = A^T U / s``. One matrix product plus an eigensolver
  on a ``min(m, n)``-sized matrix: a full ``eigh`` (the whole spectrum), or, for
  ``k <= side/2`` on sides above 2048, block subspace iteration on the Gram
  matrix (cheap products instead of a 4096-sized ``eigh``), accepted only when
  its Ritz residual is below ``RITZ_TOLERANCE`` (else the full ``eigh`` runs:
  a flat spectrum costs time, never accuracy). The Gram matrix is float64 up to
  16M weights and float32 above (VGG fc6): eigenvalue errors ~``eps * s_1^2``
  cost a relative ``1e-7 (s_1/s_i)^2`` on ``s_i``.
- ``"randomized"``: ``torch.svd_lowrank`` (Halko et al.) with oversampling
  and two power iterations; only the top ``k``. Its accuracy depends on the
  spectrum's decay, so ``"auto"`` never picks it; use it explicitly when ``k``
  is small compared with ``min(m, n)``.

``"auto"`` picks ``"exact"`` when ``min(m, n) <= 1024`` and ``"gram"`` above.
:func:`svd_residual` is the a-posteriori accuracy check every result carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from dldebug.arguments import integer, received
from dldebug.errors import ConfigError, InputError

__all__ = ["SvdMethod", "TruncatedSvd", "check_method", "choose_svd_method", "svd_residual", "truncated_svd"]

SvdMethod = Literal["auto", "exact", "gram", "randomized"]
_METHODS = ("auto", "exact", "gram", "randomized")
EXACT_MAX_SIDE = 1024  # above this, LAPACK's full SVD is slower than Gram + eigh by ~10x
SUBSPACE_MIN_SIDE = 2048  # below this a full eigh of the Gram matrix is cheap enough
SUBSPACE_ITERATIONS = 4
RITZ_TOLERANCE = 1e-3  # subspace iteration must reach this Gram residual (relative to s_1^2), else full eigh


@dataclass(frozen=True)
class TruncatedSvd:
    """The top ``k`` singular triplets: ``A ~ U @ diag(S) @ Vh``.

    Attributes:
        U: left singular vectors, ``m x k``.
        S: singular values, descending, ``k``.
        Vh: right singular vectors (rows), ``k x n``.
        method: the algorithm that produced them.
    """

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor
    method: str


def check_method(method: object) -> None:
    """Refuse an unknown SVD method, listing the allowed ones.

    Raises:
        ConfigError: ``method`` is not one of :data:`SvdMethod`.
    """
    if not isinstance(method, str) or method not in _METHODS:
        raise ConfigError(f"Unknown SVD method {method!r}; choose one of {list(_METHODS)}.")


def choose_svd_method(m: int, n: int) -> Literal["exact", "gram"]:
    """The algorithm ``"auto"`` uses for an ``m x n`` matrix.

    Example:
        >>> choose_svd_method(64, 512), choose_svd_method(4096, 25088)
        ('exact', 'gram')
    """
    return "exact" if min(m, n) <= EXACT_MAX_SIDE else "gram"


def truncated_svd(matrix: torch.Tensor, k: int | None = None, *, method: SvdMethod = "auto",
                  seed: int = 0) -> TruncatedSvd:
    """The top ``k`` singular triplets of a 2-D matrix.

    Args:
        matrix: the ``m x n`` matrix (any float dtype; results are float64 for
            ``"exact"`` on small matrices and ``"gram"``, else the input dtype).
        k: how many triplets (default: all ``min(m, n)``).
        method: ``"auto"``, ``"exact"``, ``"gram"`` or ``"randomized"`` (see the module doc).
        seed: seeds the random projection of ``"randomized"``.

    Returns:
        A :class:`TruncatedSvd`.

    Raises:
        ConfigError: an unknown method or a ``k`` that is not an int in ``1..min(m, n)``.
        InputError: ``matrix`` is not a 2-D float tensor.

    Example:
        >>> a = torch.diag(torch.tensor([3.0, 2.0, 1.0]))
        >>> truncated_svd(a, 2).S.tolist()
        [3.0, 2.0]
    """
    check_method(method)
    if not isinstance(matrix, torch.Tensor) or matrix.ndim != 2 or not matrix.is_floating_point():
        raise InputError(f"matrix must be a 2-D float tensor; got {received(matrix)}"
                         + (f" of {matrix.dtype}." if isinstance(matrix, torch.Tensor) else "."))
    m, n = matrix.shape
    full = min(m, n)
    requirement = f"k must be in 1..{full} for a {m} x {n} matrix"
    k = full if k is None else integer(k, requirement, error=ConfigError)
    if not 1 <= k <= full:
        raise ConfigError(f"{requirement}; got {k}.")
    chosen = choose_svd_method(m, n) if method == "auto" else method
    if chosen == "exact":
        work = matrix.double() if m * n <= 1 << 22 else matrix
        u, s, vh = torch.linalg.svd(work, full_matrices=False)
        return TruncatedSvd(u[:, :k], s[:k], vh[:k], "exact")
    if chosen == "gram":
        return _gram_svd(matrix, k, seed)
    return _randomized_svd(matrix, k, seed)


def _gram_svd(matrix: torch.Tensor, k: int, seed: int) -> TruncatedSvd:
    m, n = matrix.shape
    wide = m <= n  # eigendecompose the smaller Gram matrix
    # float64 Gram where cheap; float32 for VGG-sized layers (eigenvalue error ~1e-7 * s_1^2, i.e. a relative
    # error ~1e-7 * (s_1/s_i)^2 on s_i: 1e-5 even 100x below the top singular value).
    a = matrix.double() if m * n <= 1 << 24 else matrix.float()
    gram = a @ a.T if wide else a.T @ a
    side = gram.shape[0]
    found = _subspace_eigh(gram, k, seed) if side > SUBSPACE_MIN_SIDE and k <= side // 2 else None
    if found is None:  # small, or a flat spectrum where subspace iteration stalls: the full eigh
        evals, evecs = torch.linalg.eigh(gram.double())  # ascending
        evals, evecs = evals.flip(0)[:k], evecs.flip(1)[:, :k]
    else:
        evals, evecs = found
    evecs = evecs.to(a.dtype)
    s = evals.clamp_min(0.0).sqrt().to(a.dtype)
    # Directions with s == 0 carry no energy; dividing by a floor keeps them finite.
    safe = s.clamp_min(torch.finfo(a.dtype).tiny ** 0.5)
    if wide:
        u, vh = evecs, (a.T @ evecs / safe).T
    else:
        vh, u = evecs.T, a @ evecs / safe
    return TruncatedSvd(u, s, vh, "gram")


def _subspace_eigh(gram: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Top-``k`` eigenpairs of a PSD matrix by block subspace iteration, or None if it does not converge.

    The Gram matrix squares the spectrum's decay, so each product with it acts
    like two power iterations on the weight matrix. After 4 products, and again
    after 8, a Rayleigh-Ritz step checks the residual ``||G u - lambda u|| / lambda_1``
    against ``RITZ_TOLERANCE``. Orthonormalisation is Cholesky-QR (GEMM-based, far
    faster than Householder QR here), with Householder QR as the fallback.
    """
    side = gram.shape[0]
    width = min(side, k + k // 2 + 16)
    generator = torch.Generator().manual_seed(seed)
    block = _orthonormal(torch.randn(side, width, generator=generator, dtype=gram.dtype))
    for _check in range(2):
        for _ in range(SUBSPACE_ITERATIONS):
            block = _orthonormal(gram @ block, passes=1)  # rough orthonormality keeps the iteration stable
        block = _orthonormal(block)
        small = block.T @ gram @ block
        evals, evecs = torch.linalg.eigh((small + small.T) / 2)
        evals, vectors = evals.flip(0)[:k].double(), block @ evecs.flip(1)[:, :k]
        if _ritz_residual(gram, evals, vectors) <= RITZ_TOLERANCE:
            return evals, vectors.double()
        block = block @ evecs.flip(1)  # restart from the Ritz vectors, best first
    return None


def _orthonormal(block: torch.Tensor, passes: int = 2) -> torch.Tensor:
    """An orthonormal basis of the block's columns (Cholesky-QR; Householder QR if it breaks down)."""
    try:
        for _ in range(passes):
            upper = torch.linalg.cholesky(block.T @ block, upper=True)
            block = torch.linalg.solve_triangular(upper, block, upper=True, left=False)
        return block
    except RuntimeError:  # torch.linalg.LinAlgError: the block is numerically rank-deficient
        return torch.linalg.qr(block)[0]


def _ritz_residual(gram: torch.Tensor, evals: torch.Tensor, evecs: torch.Tensor) -> float:
    """``max ||G u - lambda u|| / lambda_1`` over the Ritz pairs (one ``side x k`` product)."""
    vectors = evecs.to(gram.dtype)
    residual = (gram @ vectors - vectors * evals.to(gram.dtype)).norm(dim=0).max()
    return float(residual) / max(float(evals[0]), 1e-300)


def _randomized_svd(matrix: torch.Tensor, k: int, seed: int) -> TruncatedSvd:
    m, n = matrix.shape
    q = min(k + max(10, k // 10), min(m, n))
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        u, s, v = torch.svd_lowrank(matrix, q=q, niter=2)
    finally:
        torch.random.set_rng_state(state)
    return TruncatedSvd(u[:, :k], s[:k], v[:, :k].T, "randomized")


def svd_residual(matrix: torch.Tensor, svd: TruncatedSvd, *, max_vectors: int = 64) -> float:
    """Largest ``||A^T u_i - s_i v_i||`` or ``||A v_i - s_i u_i||``, over ``s_1`` (0 for exact triplets).

    A true singular triplet has residual 0 up to rounding, so this catches an
    inaccurate algorithm. It checks up to ``max_vectors`` triplets spread evenly
    from the first to the last (the last converge slowest), so it costs at most
    ``2 * max_vectors`` matrix-vector products.

    Example:
        >>> a = torch.randn(30, 20, generator=torch.Generator().manual_seed(0))
        >>> svd_residual(a, truncated_svd(a, 5)) < 1e-10
        True
    """
    k = svd.S.numel()
    if k == 0 or float(svd.S[0]) == 0.0:
        return 0.0
    pick = torch.linspace(0, k - 1, min(k, max_vectors)).round().long().unique()
    u, s, vh = svd.U[:, pick], svd.S[pick], svd.Vh[pick]
    a = matrix.to(u.dtype)
    # Both sides: the Gram route makes one of them exact by construction.
    left = (a.T @ u - vh.T * s).norm(dim=0).max()
    right = (a @ vh.T - u * s).norm(dim=0).max()
    return float(torch.maximum(left, right) / svd.S[0])
