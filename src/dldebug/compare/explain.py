"""A catalogue of defaults that differ between frameworks, checked against two paired layers.

Each rule reads the two layers' configurations (and weights where the bug lives
there) and, when it recognises a known mismatch, says what it saw, with the
values, and how to fix the port. Rules never look at outputs: the comparison
decides *where* two models diverge, the catalogue says *why*.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dldebug.compare.matching import LayerPair

__all__ = ["CONFIG_RULES", "RULES", "Explanation", "explain_pair"]


@dataclass(frozen=True)
class Explanation:
    """One recognised mismatch: a rule id, a message citing the values, the evidence and a fix.

    ``affects_inference`` is False for settings that only matter while training (momentum).
    """

    rule: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str = ""
    affects_inference: bool = True


def _differ(x: Any, y: Any) -> bool:
    if isinstance(x, float) or isinstance(y, float):
        return x is None or y is None or abs(float(x) - float(y)) > 1e-6 * max(abs(float(x)), abs(float(y)), 1e-12)
    return bool(x != y)


def _values(pair: LayerPair, key: str) -> tuple[Any, Any]:
    return pair.a.config.get(key), pair.b.config.get(key)


def _who(record: Any) -> str:
    return f"{record.framework} layer {record.name!r}"


def _names(pair: LayerPair) -> dict[str, str]:
    return {"layer_a": pair.a.name, "layer_b": pair.b.name, "framework_a": pair.a.framework,
            "framework_b": pair.b.framework}


def _eps(pair: LayerPair, kind: str, rule: str, defaults: str) -> Explanation | None:
    if pair.a.kind != kind or pair.b.kind != kind:
        return None
    eps_a, eps_b = _values(pair, "eps")
    if eps_a is None or eps_b is None or not _differ(eps_a, eps_b):
        return None
    return Explanation(rule, f"{kind} eps differs: {_who(pair.a)} uses eps={eps_a:g}, {_who(pair.b)} uses "
                             f"eps={eps_b:g} ({defaults}).",
                       {**_names(pair), "eps_a": eps_a, "eps_b": eps_b},
                       f"Set eps={eps_a:g} in {_who(pair.b)}, as in {_who(pair.a)}.")


def batchnorm_eps(pair: LayerPair) -> Explanation | None:
    return _eps(pair, "batchnorm", "batchnorm.eps", "defaults: Keras 1e-3, PyTorch and ONNX 1e-5")


def folded_batchnorm(pair: LayerPair) -> Explanation | None:
    """A BatchNorm folded into a conv (or decomposed into Mul/Add) whose folded weights disagree with it."""
    fold = pair.fold
    if fold is None or pair.weights in ("folded", "folded (unchecked)"):
        return None
    bn = fold.get("batchnorm")
    if pair.weights == "folded, eps differs":
        eps_a, eps_b = float(fold["eps_a"]), float(fold["eps_b"])  # type: ignore[arg-type]
        return Explanation(
            "batchnorm.eps",
            f"batchnorm eps differs: {_who(pair.a)} uses eps={eps_a:.3g}, {_who(pair.b)} uses eps={eps_b:.3g} "
            f"(BatchNorm {bn!r} is folded into one side's weights; the folded scale gamma/sqrt(var+eps) implies "
            "that eps; defaults: Keras 1e-3, PyTorch and ONNX 1e-5).",
            {**_names(pair), "eps_a": eps_a, "eps_b": eps_b, "folded": True},
            f"Set eps={eps_a:.3g} on BatchNorm {bn!r} before converting, as in {_who(pair.a)}.")
    channels = fold.get("channels", [])
    factors = fold.get("channel_factors", [])
    what = "the bias" if pair.weights == "folded, bias differs" else f"channel(s) {channels}" + (
        f" off by factor(s) {factors}" if factors else " not a rescaling of the kernel")
    return Explanation(
        "weights.differ",
        f"{pair.b.name}'s weights do not match {pair.a.name}'s conv and BatchNorm {bn!r} folded together: {what}.",
        {**_names(pair), "channels": list(channels), "channel_factors": list(factors),  # type: ignore[call-overload]
         "channels_off": fold.get("channels_off", 0)},
        "Load the same weights into both models (check the conversion of this layer's kernel and BatchNorm).")


def layernorm_eps(pair: LayerPair) -> Explanation | None:
    return _eps(pair, "layernorm", "layernorm.eps", "defaults: Keras 1e-3, PyTorch 1e-5")


def batchnorm_momentum(pair: LayerPair) -> Explanation | None:
    if pair.a.kind != "batchnorm" or pair.b.kind != "batchnorm":
        return None
    m_a, m_b = _values(pair, "momentum")
    if m_a is None or m_b is None or not _differ(m_a, m_b):
        return None
    return Explanation(
        "batchnorm.momentum",
        f"BatchNorm momentum means different things: as PyTorch's weight of the new batch, {_who(pair.a)} uses "
        f"{m_a:g} and {_who(pair.b)} uses {m_b:g} (Keras momentum=0.99 equals PyTorch momentum=0.01; "
        f"PyTorch's default 0.1 equals Keras 0.9). Only training is affected.",
        {**_names(pair), "torch_momentum_a": m_a, "torch_momentum_b": m_b},
        f"Set PyTorch momentum = 1 - Keras momentum (here {m_a:g}) before fine-tuning the port.",
        affects_inference=False)


def gelu_approximation(pair: LayerPair) -> Explanation | None:
    if pair.a.kind != "gelu" or pair.b.kind != "gelu":
        return None
    ap_a, ap_b = _values(pair, "approximate")
    if ap_a is None or ap_b is None or ap_a == ap_b:
        return None
    return Explanation("gelu.approximate", f"GELU differs: {_who(pair.a)} uses approximate={ap_a!r}, "
                       f"{_who(pair.b)} uses approximate={ap_b!r} (exact erf vs tanh formula; differ by up to ~1e-3).",
                       {**_names(pair), "approximate_a": ap_a, "approximate_b": ap_b},
                       f"Use the same form on both sides, e.g. nn.GELU(approximate={ap_a!r}).")


def leaky_relu_slope(pair: LayerPair) -> Explanation | None:
    if pair.a.kind != "leaky_relu" or pair.b.kind != "leaky_relu":
        return None
    s_a, s_b = _values(pair, "negative_slope")
    if s_a is None or s_b is None or not _differ(s_a, s_b):
        return None
    return Explanation("leaky_relu.slope", f"LeakyReLU slope differs: {_who(pair.a)} uses {s_a:g}, "
                       f"{_who(pair.b)} uses {s_b:g} (defaults: PyTorch/ONNX 0.01, tf.nn.leaky_relu 0.2, "
                       "Keras layer 0.3).",
                       {**_names(pair), "slope_a": s_a, "slope_b": s_b},
                       f"Set the slope explicitly on both sides, e.g. nn.LeakyReLU(negative_slope={s_a:g}).")


def _is_same(cfg: dict[str, Any]) -> bool:
    return cfg.get("padding") == "same" or str(cfg.get("auto_pad", "")).startswith("SAME")


def same_padding(pair: LayerPair) -> Explanation | None:
    if pair.a.kind != "conv" or pair.b.kind != "conv":
        return None
    same_a, same_b = _is_same(pair.a.config), _is_same(pair.b.config)
    stride = tuple(pair.a.config.get("stride") or ())
    if same_a == same_b or not stride or max(stride) < 2:
        return None
    explicit = pair.b.config.get("padding") if same_a else pair.a.config.get("padding")
    return Explanation(
        "conv.same_padding",
        f"'same' padding with stride {list(stride)} is asymmetric in TensorFlow/Keras (the extra row and column "
        f"go at the bottom/right) but the other side pads symmetrically (padding={explicit}); the outputs shift.",
        {**_names(pair), "stride": list(stride), "padding_a": str(pair.a.config.get("padding")),
         "padding_b": str(pair.b.config.get("padding")), "kernel_size": list(pair.a.config.get("kernel_size", ()))},
        "In PyTorch pad explicitly like TF: x = F.pad(x, (0, 1, 0, 1)) (for a 3x3 kernel, stride 2, even input) "
        "then Conv2d(padding=0).")


def flatten_order(pair: LayerPair) -> Explanation | None:
    if pair.a.kind != "dense" or pair.weights != "same as stored, flatten order not permuted":
        return None
    return Explanation(
        "flatten.order",
        f"{pair.b.name} copies the weights of {pair.a.name} as stored, but the flatten before it orders features "
        f"{'HWC' if pair.a.layout == 'channels_last' else 'CHW'} in {pair.a.framework} and "
        f"{'HWC' if pair.b.layout == 'channels_last' else 'CHW'} in {pair.b.framework} (NHWC vs NCHW flatten).",
        {**_names(pair), "layout_a": pair.a.layout, "layout_b": pair.b.layout,
         "in_features": int(pair.a.params["weight"].shape[1])},
        "Permute the first Dense layer's input columns (w.reshape(out, H, W, C).permute(0, 3, 1, 2).reshape(out, "
        "-1)), or permute the activations to NHWC before flattening.")


def _wrong_layouts(w: np.ndarray) -> dict[str, np.ndarray]:
    if w.ndim == 4:  # canonical OIHW; raw Keras kernel is HWIO
        raw = np.moveaxis(w, (0, 1), (-1, -2))
        return {"HWIO kernel reshaped (not transposed) to OIHW": raw.reshape(w.shape),
                "kernel H and W swapped": w.transpose(0, 1, 3, 2)}
    if w.ndim == 2:  # canonical (out, in); raw Dense kernel is (in, out)
        return {"Dense kernel (in, out) reshaped (not transposed) to (out, in)": w.T.reshape(w.shape),
                **({"Dense kernel used without transposing": w.T} if w.shape[0] == w.shape[1] else {})}
    return {}


def weight_layout(pair: LayerPair) -> Explanation | None:
    if pair.a.kind not in ("conv", "dense") or not pair.weights.startswith("differ"):
        return None
    wa, wb = pair.a.params.get("weight"), pair.b.params.get("weight")
    if wa is None or wb is None or wa.shape != wb.shape:
        return None
    for label, candidate in _wrong_layouts(wa).items():
        if np.allclose(candidate, wb, rtol=1e-5, atol=1e-6):
            return Explanation("weights.layout", f"{pair.b.name}'s weights are {pair.a.name}'s in the wrong "
                               f"layout: {label} (shape {list(wb.shape)}).",
                               {**_names(pair), "layout_error": label, "shape": list(wb.shape)},
                               "Conv: torch_w = keras_kernel.transpose(3, 2, 0, 1) (HWIO -> OIHW); Dense: "
                               "torch_w = keras_kernel.T.")
    return Explanation("weights.differ", f"{pair.b.name}'s weights differ from {pair.a.name}'s and no known layout "
                       f"transpose explains it (max |diff| {float(np.abs(wa - wb).max()):.3g}).",
                       {**_names(pair), "max_abs_weight_diff": float(np.abs(wa - wb).max())},
                       "Load the same weights into both models (check the conversion script for this layer).")


def parameters_differ(pair: LayerPair) -> Explanation | None:
    """A BatchNorm, LayerNorm or affine pair whose parameters differ: name them and the channels (conv/dense:
    :func:`weight_layout`)."""
    if pair.a.kind in ("conv", "dense") or not pair.weights.startswith("differ"):
        return None
    differing = {}
    for name, wa in pair.a.params.items():
        wb = pair.b.params.get(name)
        if wb is not None and wa.shape == wb.shape and not np.allclose(wa, wb, rtol=1e-5, atol=1e-6):
            differing[name] = wa, wb
    if not differing:
        return None
    parts, evidence = [], {}
    for name, (wa, wb) in differing.items():
        off = np.flatnonzero(~np.isclose(wa, wb, rtol=1e-5, atol=1e-6).reshape(len(wa), -1).all(axis=1)) \
            if wa.ndim else np.array([], dtype=int)
        channels = f" at channel(s) {off[:8].tolist()}{' ...' if len(off) > 8 else ''}" if wa.ndim == 1 else ""
        parts.append(f"{name}{channels} (max |diff| {float(np.abs(wa - wb).max()):.3g})")
        evidence[f"{name}_max_abs_diff"] = float(np.abs(wa - wb).max())
        if wa.ndim == 1:
            evidence[f"{name}_channels"] = off[:20].tolist()
    return Explanation("weights.differ", f"{pair.b.name}'s parameters differ from {pair.a.name}'s: "
                       f"{'; '.join(parts)}.", {**_names(pair), **evidence},
                       "Load the same weights into both models (check the conversion script for this layer).")


def avgpool_padding(pair: LayerPair) -> Explanation | None:
    if pair.a.kind != "avgpool" or pair.b.kind != "avgpool":
        return None
    inc_a, inc_b = _values(pair, "count_include_pad")
    pads = (pair.a.config.get("padding"), pair.b.config.get("padding"))
    if inc_a is None or inc_b is None or inc_a == inc_b or all(p in (0, (), "valid", None) for p in pads):
        return None
    return Explanation("avgpool.count_include_pad", f"AvgPool counts padding differently: count_include_pad is "
                       f"{inc_a} in {pair.a.name} and {inc_b} in {pair.b.name} (PyTorch default True, Keras/ONNX "
                       f"exclude padding); border averages differ.",
                       {**_names(pair), "count_include_pad_a": inc_a, "count_include_pad_b": inc_b},
                       f"Set nn.AvgPool2d(..., count_include_pad={inc_a}).")


def resize_coordinates(pair: LayerPair) -> Explanation | None:
    if pair.a.kind != "resize" or pair.b.kind != "resize":
        return None
    al_a, al_b = _values(pair, "align_corners")
    if al_a is None or al_b is None or al_a == al_b:
        return None
    return Explanation("resize.align_corners", f"bilinear resize maps coordinates differently: align_corners={al_a} "
                       f"in {pair.a.name}, align_corners={al_b} in {pair.b.name} (Keras/TF2 use half-pixel centres "
                       "= align_corners=False).",
                       {**_names(pair), "align_corners_a": al_a, "align_corners_b": al_b},
                       f"Use align_corners={al_a} on both sides.")


def recurrent_gates(pair: LayerPair) -> Explanation | None:
    if pair.a.kind not in ("lstm", "gru") or pair.a.kind != pair.b.kind:
        return None
    order_a, order_b = _values(pair, "gate_order")
    two_a, two_b = _values(pair, "two_biases")
    if order_a == order_b and two_a == two_b:
        return None
    return Explanation(
        f"{pair.a.kind}.gates",
        f"{pair.a.kind.upper()} weights are laid out differently: gate order {order_a} in {pair.a.name} vs "
        f"{order_b} in {pair.b.name}; two biases (b_ih + b_hh) {two_a} vs {two_b}.",
        {**_names(pair), "gate_order_a": order_a, "gate_order_b": order_b, "two_biases_a": two_a,
         "two_biases_b": two_b},
        "Keras LSTM (i,f,c,o) maps to PyTorch (i,f,g,o) as is; Keras GRU (z,r,h) must be re-ordered to PyTorch "
        "(r,z,n) and needs reset_after=True; put the Keras bias in bias_ih and zeros (or the recurrent bias) in "
        "bias_hh.")


RULES: tuple[Callable[[LayerPair], Explanation | None], ...] = (
    batchnorm_eps, folded_batchnorm, layernorm_eps, gelu_approximation, leaky_relu_slope, same_padding, flatten_order,
    weight_layout, parameters_differ, avgpool_padding, resize_coordinates, recurrent_gates, batchnorm_momentum,
)


# Rules that read plain settings: worth reporting even where the outputs still agree.
CONFIG_RULES = (batchnorm_eps, folded_batchnorm, layernorm_eps, gelu_approximation, leaky_relu_slope, avgpool_padding,
                resize_coordinates, batchnorm_momentum)


def explain_pair(pair: LayerPair, *, diverged: bool = True) -> list[Explanation]:
    """The catalogue's explanations for this pair, inference-relevant ones first.

    Args:
        pair: two paired layers.
        diverged: run every rule (True) or only the plain-setting ones (False).
    """
    found = [e for rule in (RULES if diverged else CONFIG_RULES) if (e := rule(pair)) is not None]
    return sorted(found, key=lambda e: not e.affects_inference)
