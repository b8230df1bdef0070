from __future__ import annotations

import math

import numpy as np
import pytest

from dldebug.compare.layout import convert_layout, flatten_permutation, views
from dldebug.compare.metrics import layer_metrics


def test_metrics_match_numpy_oracle() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    b = a + rng.normal(0, 1e-3, a.shape).astype(np.float32)
    m = layer_metrics(a, b)
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    assert m.max_abs == pytest.approx(np.abs(a64 - b64).max())
    assert m.mean_abs == pytest.approx(np.abs(a64 - b64).mean())
    assert m.rel_error == pytest.approx(np.linalg.norm(a64 - b64) / np.linalg.norm(a64))
    assert m.cosine == pytest.approx(a64 @ b64 / np.linalg.norm(a64) / np.linalg.norm(b64))
    assert m.sqnr_db == pytest.approx(10 * math.log10((a64 ** 2).sum() / ((a64 - b64) ** 2).sum()))
    assert (m.mean_a, m.mean_b) == pytest.approx((a64.mean(), b64.mean()))
    assert not m.within  # 1e-3 noise is far outside rtol=1e-4 of max|a| ~ 3


@pytest.mark.parametrize(("noise", "within"), [(0.0, True), (5e-4, True), (5e-3, False)])
def test_tolerance_scales_with_layer_magnitude(noise: float, within: bool) -> None:
    a = np.linspace(-10, 10, 101)
    # 5e-4 passes although an element-wise rtol would fail next to a=0: tolerance is 1e-5 + 1e-4 * 10
    assert layer_metrics(a, a + noise).within is within


def test_nan_in_b_is_never_within() -> None:
    a = np.ones(4)
    b = np.array([1.0, np.nan, 1.0, 1.0])
    assert not layer_metrics(a, b).within


def test_flatten_permutation_matches_numpy_transpose() -> None:
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # NHWC
    nhwc_flat = x.reshape(2, -1)
    nchw_flat = x.transpose(0, 3, 1, 2).reshape(2, -1)
    assert np.array_equal(nhwc_flat[:, flatten_permutation((3, 4, 5), "channels_last")], nchw_flat)
    assert np.array_equal(nchw_flat[:, flatten_permutation((5, 3, 4), "channels_first")], nhwc_flat)


def test_views_offer_layout_change_and_flatten_orders() -> None:
    x = np.random.default_rng(1).standard_normal((1, 4, 5, 3))
    names = [n for n, _ in views(x, "channels_last", "channels_first")]
    assert names == ["channels_last->channels_first", "identity"]
    assert convert_layout(x, "channels_last", "channels_first").shape == (1, 3, 4, 5)
    flat = x.reshape(1, -1)
    flat_views = dict(views(flat, "channels_last", "channels_first", [((4, 5, 3), "channels_last")]))
    assert np.array_equal(flat_views["flatten channels_last->other"], x.transpose(0, 3, 1, 2).reshape(1, -1))
