"""A BatchNorm folded away by a converter, checked against the BatchNorm it came from.

An optimised export folds ``conv -> BatchNorm`` into one conv with
``W' = W * s`` and ``b' = (b - mean) * s + beta``, where ``s = gamma / sqrt(var + eps)``;
tf2onnx and Keras 3 may instead leave a per-channel ``x * s + t`` (an "affine"
layer). Checking the folded weights against ``s`` recovers what a plain weight
comparison cannot: a channel scaled by mistake, or the eps the converter used
(solving ``s_c = gamma_c / sqrt(var_c + eps)`` per channel), so an eps difference is
found and explained even though the BatchNorm no longer exists on one side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dldebug.compare.records import LayerRecord

__all__ = ["FoldCheck", "check_affine", "check_fold"]


@dataclass(frozen=True)
class FoldCheck:
    """The verdict: ``weights`` for the table and the evidence the catalogue explains it with.

    ``weights`` is ``"folded"`` (consistent with a's BatchNorm), ``"folded, eps differs"``
    or ``"folded, differ"`` (channels listed in ``evidence["channels"]``).
    """

    weights: str
    evidence: dict[str, Any] = field(default_factory=dict)


def _bn(bn: LayerRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float] | None:
    p = bn.params
    mean, var = p.get("running_mean"), p.get("running_var")
    if mean is None or var is None:
        return None
    gamma = p.get("weight", np.ones_like(var))
    beta = p.get("bias", np.zeros_like(var))
    return (gamma.astype(np.float64), beta.astype(np.float64), mean.astype(np.float64), var.astype(np.float64),
            float(bn.config.get("eps", 1e-5)))


def _verdict(scale_b: np.ndarray, usable: np.ndarray, gamma: np.ndarray, var: np.ndarray, eps: float,
             bn_name: str) -> FoldCheck:
    """Compare b's per-channel scale with ``gamma / sqrt(var + eps)``; infer the eps b must have used."""
    expected = gamma / np.sqrt(var + eps)
    ratio = np.where(usable, scale_b / np.where(expected == 0, 1, expected), 1.0)
    off = np.flatnonzero(usable & (np.abs(ratio - 1) > 1e-4))
    if off.size == 0:
        return FoldCheck("folded", {"batchnorm": bn_name, "eps_a": eps})
    with np.errstate(divide="ignore", invalid="ignore"):
        implied = (gamma / scale_b) ** 2 - var
    good = usable & np.isfinite(implied) & (np.abs(scale_b) > 1e-12)
    if good.sum() >= max(2, int(0.9 * usable.sum())):
        eps_b = float(np.median(implied[good]))
        spread = np.abs(implied[good] - eps_b)
        if eps_b > 0 and bool(np.all(spread <= 1e-5 * (var[good] + eps_b) + 1e-9)):
            return FoldCheck("folded, eps differs", {"batchnorm": bn_name, "eps_a": eps, "eps_b": eps_b})
    factors = [round(float(ratio[c]), 4) for c in off[:8]]
    return FoldCheck("folded, differ", {"batchnorm": bn_name, "eps_a": eps, "channels": [int(c) for c in off[:20]],
                                        "channel_factors": factors, "channels_off": int(off.size)})


def check_fold(conv: LayerRecord, bn: LayerRecord, folded: LayerRecord) -> FoldCheck | None:
    """Does ``folded`` (one conv) equal ``conv`` followed by ``bn``? None when weights are missing.

    Example:
        >>> rec = lambda kind, **p: LayerRecord("x", kind, "", "torch", "channels_first",
        ...                                      params={k: np.asarray(v, float) for k, v in p.items()},
        ...                                      config={"eps": 1e-3} if kind == "batchnorm" else {})
        >>> conv = rec("conv", weight=np.ones((2, 1, 1, 1)))
        >>> bn = rec("batchnorm", weight=[1, 1], bias=[0, 0], running_mean=[0, 0], running_var=[1, 1])
        >>> check = check_fold(conv, bn, rec("conv", weight=np.ones((2, 1, 1, 1)) / np.sqrt(1 + 1e-5)))
        >>> check.weights, round(check.evidence["eps_b"], 7)
        ('folded, eps differs', 1e-05)
    """
    stats = _bn(bn)
    w_a, w_b = conv.params.get("weight"), folded.params.get("weight")
    if stats is None or w_a is None or w_b is None or w_a.shape != w_b.shape or w_a.shape[0] != stats[0].shape[0]:
        return None
    gamma, beta, mean, var, eps = stats
    a = w_a.astype(np.float64, order="C").reshape(w_a.shape[0], -1)
    b = w_b.astype(np.float64, order="C").reshape(w_b.shape[0], -1)
    norm = np.einsum("ij,ij->i", a, a)  # row dot products without temporaries
    usable = norm > 1e-20 * max(float(norm.max()), 1e-30)
    scale_b = np.einsum("ij,ij->i", a, b) / np.where(usable, norm, 1.0)  # least-squares per-channel factor
    peak = np.maximum(b.max(axis=1), -b.min(axis=1))  # max |b| per channel
    residual = np.abs(np.subtract(b, scale_b[:, None] * a, out=a), out=a).max(axis=1)  # a is a private copy
    uneven = np.flatnonzero(usable & (residual > 1e-4 * peak + 1e-7))
    if uneven.size:  # not a per-channel rescaling of a's kernel at all
        return FoldCheck("folded, differ", {"batchnorm": bn.name, "eps_a": eps, "channels": [int(c) for c in
                                            uneven[:20]], "channels_off": int(uneven.size),
                                            "channel_factors": []})
    check = _verdict(scale_b, usable, gamma, var, eps, bn.name)
    if check.weights == "folded" and "bias" in folded.params:
        bias_a = conv.params.get("bias", np.zeros_like(mean)).astype(np.float64)
        expected = (bias_a - mean) * gamma / np.sqrt(var + eps) + beta
        if not np.allclose(folded.params["bias"], expected, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(expected).max())):
            return FoldCheck("folded, bias differs", {"batchnorm": bn.name, "eps_a": eps})
    return check


def check_affine(bn: LayerRecord, affine: LayerRecord) -> FoldCheck | None:
    """Does ``affine`` (``x * s + t`` per channel) equal the BatchNorm ``bn`` at inference?"""
    stats = _bn(bn)
    scale, offset = affine.params.get("weight"), affine.params.get("bias")
    if stats is None or scale is None or scale.shape != stats[0].shape:
        return None
    gamma, beta, mean, var, eps = stats
    check = _verdict(scale.astype(np.float64), np.ones(scale.shape, bool), gamma, var, eps, bn.name)
    if check.weights == "folded" and offset is not None:
        expected = beta - mean * gamma / np.sqrt(var + eps)
        if not np.allclose(offset, expected, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(expected).max())):
            return FoldCheck("folded, bias differs", {"batchnorm": bn.name, "eps_a": eps})
    return check
