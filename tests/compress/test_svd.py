"""Fast SVD algorithms against numpy's exact SVD."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dldebug.compress import svd as svd_module
from dldebug.compress.svd import choose_svd_method, svd_residual, truncated_svd
from dldebug.errors import ConfigError


def _matrix(m: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    decay = torch.arange(1, min(m, n) + 1, dtype=torch.float64) ** -0.8
    return ((torch.randn(m, min(m, n), generator=g, dtype=torch.float64) * decay)
            @ torch.randn(min(m, n), n, generator=g, dtype=torch.float64) / n ** 0.5).float()


def _relative_excess(a: torch.Tensor, result: svd_module.TruncatedSvd, optimal: float) -> float:
    approx = (result.U.double() * result.S.double()) @ result.Vh.double()
    return float((a.double() - approx).norm()) / optimal - 1.0


@pytest.mark.parametrize("shape", [(120, 300), (300, 120)])
@pytest.mark.parametrize("method", ["exact", "gram", "randomized"])
def test_methods_match_numpy(shape: tuple[int, int], method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(svd_module, "SUBSPACE_MIN_SIDE", 64)  # exercise the subspace-iteration path too
    a = _matrix(*shape)
    k = 20
    s_ref = np.linalg.svd(a.double().numpy(), compute_uv=False)
    optimal = float(np.sqrt((s_ref[k:] ** 2).sum()))
    result = truncated_svd(a, k, method=method)  # type: ignore[arg-type]
    assert result.method == method
    assert result.U.shape == (shape[0], k) and result.Vh.shape == (k, shape[1])
    sv_error = np.abs(result.S.double().numpy() - s_ref[:k]) / s_ref[:k]
    # the stated accuracy on this slowly decaying spectrum: exact to float32 precision; Gram (subspace
    # iteration here) singular values within 1e-4 and the reconstruction within 1e-5 of the optimum;
    # randomized (torch.svd_lowrank, 2 power iterations) within 2% and 1%
    limits = {"exact": (1e-5, 1e-6, 1e-5), "gram": (1e-4, 1e-5, 1e-3), "randomized": (2e-2, 1e-2, 5e-2)}[method]
    assert sv_error.max() < limits[0]
    assert _relative_excess(a, result, optimal) < limits[1]
    assert svd_residual(a, result) < limits[2]


def test_gram_with_full_eigh_is_exact_to_float_precision() -> None:
    a = _matrix(200, 90)
    s_ref = np.linalg.svd(a.double().numpy(), compute_uv=False)
    result = truncated_svd(a, 60, method="gram")
    np.testing.assert_allclose(result.S.numpy(), s_ref[:60], rtol=1e-6)
    assert svd_residual(a, result) < 1e-8


def test_residual_catches_a_wrong_triplet() -> None:
    a = _matrix(50, 40)
    good = truncated_svd(a, 5)
    bad = svd_module.TruncatedSvd(good.U, good.S * 1.1, good.Vh, "exact")
    assert svd_residual(a, good) < 1e-10 < 0.05 < svd_residual(a, bad)


def test_auto_picks_exact_for_small_and_gram_for_large() -> None:
    assert choose_svd_method(64, 512) == "exact"
    assert choose_svd_method(4096, 25088) == "gram"
    assert truncated_svd(_matrix(30, 40), 3).method == "exact"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"method": "qr"}, "Unknown SVD method 'qr'; choose one of ['auto', 'exact', 'gram', 'randomized']."),
    ({"k": 0}, "k must be in 1..30 for a 30 x 40 matrix; got 0."),
])
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        truncated_svd(_matrix(30, 40), **kwargs)
    assert str(info.value) == message


def test_gram_falls_back_to_full_eigh_on_a_flat_spectrum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(svd_module, "SUBSPACE_MIN_SIDE", 64)
    a = torch.randn(120, 300, generator=torch.Generator().manual_seed(5))  # flat: subspace iteration stalls
    calls = []
    original = svd_module._subspace_eigh
    monkeypatch.setattr(svd_module, "_subspace_eigh", lambda *args: calls.append(1) or original(*args))
    result = truncated_svd(a, 20, method="gram")
    s_ref = np.linalg.svd(a.double().numpy(), compute_uv=False)[:20]
    assert calls == [1]  # it was tried ...
    np.testing.assert_allclose(result.S.numpy(), s_ref, rtol=1e-6)  # ... and rejected for the exact eigh
