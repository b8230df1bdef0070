"""Fuzz targets for the public entry points that take tensors or models.

Inputs are random, empty, NaN/Inf, huge, of the wrong dtype, of the wrong shape
or not tensors at all. Oracles, besides "a result or a DldebugError":

- every Report survives a JSON round trip (its evidence is plain data);
- ``diagnose_curve``: a non-finite value always gives ``loss.nonfinite``;
- ``check_ctc``: no error finding means ``torch.nn.functional.ctc_loss`` is finite;
- ``check_label_alignment``: ``accuracy`` is the plain top-1 accuracy (numpy);
- ``compare_models``: a model compared with its own copy agrees;
- ``LocallyConnected2d``: the output equals a naive per-location loop;
- ``compress_linear_layers``, ``preflight``, ``probe_equivariance``: the user's model (and
  optimizer) are left exactly as they were; the compressed model keeps the output shape.

A user's model that raises on the user's own input (a plain forward fails the same way)
may raise that same exception: dldebug did not cause it and must not disguise it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fuzz_core import Target
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

from dldebug.findings import Report

_values = st.floats(allow_nan=True, allow_infinity=True, width=32)
# Huge integers are astronomically huge (a request no machine can meet, which must be refused at once);
# sizes a machine could meet but that take minutes to allocate are not fuzzed.
_huge = st.integers(2**40, 2**70) | st.integers(-2**70, -2**40)
_wild_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), _huge, _values, st.text(max_size=3),
                          st.just([]), st.just(()))
_float_dtypes = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16])
_any_dtypes = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64,
                               torch.int32, torch.uint8, torch.bool, torch.complex64])


def _round_trip(report: Report) -> None:
    assert isinstance(report, Report), type(report)
    assert Report.from_json(report.to_json()) == report


@st.composite
def tensors(draw: Any, shape: Any = None, dtypes: st.SearchStrategy[torch.dtype] = _any_dtypes,
            elements: st.SearchStrategy[float] = _values, max_dims: int = 4) -> torch.Tensor:
    """A tensor of the given (or any small) shape, any dtype, values NaN/Inf/huge included."""
    if shape is None:
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=5))
    array = draw(hnp.arrays(np.float64, shape, elements=elements))
    dtype = draw(dtypes)
    with np.errstate(all="ignore"):
        if not (dtype.is_floating_point or dtype.is_complex):
            array = np.nan_to_num(array, nan=0, posinf=100, neginf=-100).clip(-100, 100)
        tensor = torch.from_numpy(np.asarray(array, dtype=np.float64)).to(dtype)
    if tensor.ndim >= 2 and draw(st.booleans()):
        tensor = tensor.transpose(0, 1)  # non-contiguous
    return tensor


def _user_error(call: Any) -> type[BaseException] | None:
    """The exception type a plain call raises, or None when it succeeds."""
    try:
        call()
    except Exception as exc:
        return type(exc)
    return None


def _run_allowing(user_error: type[BaseException] | None, call: Any) -> Any:
    """``call()``; an exception of the type the user's own forward raised is re-raised as acceptable."""
    try:
        return call()
    except Exception as exc:
        if user_error is not None and isinstance(exc, user_error) and not exc.__class__.__module__.startswith(
                "dldebug"):
            return None
        raise


# -- diagnose_curve --------------------------------------------------------------------------------------
_curve_values = st.one_of(
    st.lists(_values, max_size=300),
    st.lists(st.floats(-1e3, 1e3), min_size=8, max_size=400),
    hnp.arrays(st.sampled_from([np.float64, np.float32, np.int64, np.bool_, np.float16]),
               hnp.array_shapes(min_dims=1, max_dims=1, max_side=400)),
    tensors(max_dims=1, dtypes=_float_dtypes),
    st.integers(0, 5000).map(lambda n: 2.3 * np.exp(-np.arange(n) / 80) + 0.05),
)
_broken_curve = {
    "values": st.one_of(tensors(max_dims=3), st.lists(_wild_scalars, max_size=10), _wild_scalars,
                        hnp.arrays(np.complex64, (4,)), hnp.arrays(np.float64, (3, 4))),
    "steps": st.one_of(st.lists(_values, max_size=300), st.lists(st.integers(-5, 10**9), max_size=300),
                       _wild_scalars),
    "name": st.one_of(st.text(max_size=4), _wild_scalars),
    "mode": _wild_scalars,
}


@st.composite
def curve_cases(draw: Any) -> dict[str, Any]:
    values = draw(_curve_values)
    case = {"values": values, "steps": None, "name": "loss", "mode": draw(st.sampled_from(["min", "max"]))}
    if draw(st.booleans()):
        size = values.numel() if isinstance(values, torch.Tensor) else np.size(values)
        case["steps"] = np.cumsum(draw(hnp.arrays(np.int64, (size,), elements=st.integers(0, 100))))
    for key in draw(st.sampled_from([[], [], [], ["values"], ["steps"], ["name"], ["mode"], ["values", "steps"]])):
        case[key] = draw(_broken_curve[key])
    return case


def _check_curve(case: dict[str, Any], _workdir: Path) -> None:
    from dldebug import diagnose_curve

    values = case["values"]
    report = diagnose_curve(values, case["steps"], name=case["name"], mode=case["mode"])
    _round_trip(report)
    with np.errstate(all="ignore"):
        raw = np.asarray(values.float() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    assert report.has("loss.nonfinite") == bool(not np.isfinite(raw).all()), report.findings


CURVE = Target("diagnose_curve", "dldebug.curves", curve_cases(), _check_curve, 12000, 400)


# -- check_ctc ---------------------------------------------------------------------------------------------
@st.composite
def ctc_cases(draw: Any) -> dict[str, Any]:
    """A plausible CTC batch, then one or two of its parts broken (or none)."""
    t, n, c, s = draw(st.integers(1, 12)), draw(st.integers(1, 4)), draw(st.integers(1, 6)), draw(st.integers(0, 6))
    logits = draw(tensors((t, n, c), _float_dtypes, st.floats(-20, 20)))
    case: dict[str, Any] = {
        "log_probs": logits.float().log_softmax(-1).to(logits.dtype) if draw(st.booleans()) else logits,
        "targets": torch.tensor(draw(hnp.arrays(np.int64, (n, s), elements=st.integers(-1, c))),
                                dtype=torch.int64),
        "input_lengths": draw(st.lists(st.integers(0, t), min_size=n, max_size=n)),
        "target_lengths": draw(st.lists(st.integers(0, s), min_size=n, max_size=n)),
        "blank": draw(st.sampled_from([0, c - 1, -1, c])),
        "num_labels": draw(st.one_of(st.none(), st.integers(-1, c + 1))),
        "layout": draw(st.sampled_from(["TNC", "TNC", "NTC", "CTN"])),
    }
    for key in draw(st.lists(st.sampled_from(sorted(case)), max_size=2, unique=True)):
        case[key] = draw(_broken_ctc_part(key))
    return case


def _broken_ctc_part(key: str) -> st.SearchStrategy[Any]:
    if key in ("log_probs", "targets"):
        return st.one_of(tensors(), _wild_scalars, st.lists(st.integers(-2, 9), max_size=4))
    if key in ("input_lengths", "target_lengths"):
        return st.one_of(tensors(max_dims=2), st.lists(st.one_of(st.integers(-2**70, 2**70), _values), max_size=5),
                         _wild_scalars)
    return _wild_scalars


def _check_ctc(case: dict[str, Any], _workdir: Path) -> None:
    from dldebug import check_ctc

    report = check_ctc(case["log_probs"], case["targets"], case["input_lengths"], case["target_lengths"],
                       blank=case["blank"], num_labels=case["num_labels"], layout=case["layout"])
    _round_trip(report)
    if report.filter(min_severity="error"):
        return
    lp = case["log_probs"].float()
    if case["layout"] == "NTC":
        lp = lp.transpose(0, 1)
    lengths = [torch.as_tensor(case[k], dtype=torch.int64) for k in ("input_lengths", "target_lengths")]
    if lp.dim() == 2:
        lp = lp.unsqueeze(1)
    loss = torch.nn.functional.ctc_loss(lp, case["targets"], *lengths, blank=case["blank"], reduction="none")
    assert torch.isfinite(loss).all(), f"no error finding, but ctc_loss = {loss.tolist()}: {report.findings}"


CTC = Target("check_ctc", "dldebug.ctc", ctc_cases(), _check_ctc, 10000, 400)


# -- check_label_alignment --------------------------------------------------------------------------------
@st.composite
def label_cases(draw: Any) -> dict[str, Any]:
    n, m = draw(st.integers(0, 40)), draw(st.integers(1, 6))
    labels = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, m - 1)))
    permutation = np.array(draw(st.permutations(range(m))))
    kind = draw(st.sampled_from(["logits", "indices", "probabilities"]))
    noise = draw(hnp.arrays(np.float64, (n, m), elements=st.floats(-3, 3)))
    logits = noise + 4 * np.eye(m)[permutation[labels]] * draw(st.sampled_from([0, 1]))
    predictions: Any = logits if kind == "logits" else (
        np.argmax(logits, axis=1) if kind == "indices" else np.exp(logits) / np.exp(logits).sum(1, keepdims=True))
    case: dict[str, Any] = {"predictions": predictions, "labels": labels, "num_classes": None,
                            "dataset_classes": None, "model_classes": None, "alpha": 1e-3}
    names = st.lists(st.text(max_size=3), min_size=m, max_size=m)
    if draw(st.booleans()):
        case["dataset_classes"] = draw(names)
    if draw(st.booleans()):
        case["model_classes"] = draw(names)
    breaking = {"predictions": st.one_of(tensors(max_dims=3), _wild_scalars,
                                         hnp.arrays(np.float64, (n, m), elements=_values)),
                "labels": st.one_of(tensors(max_dims=2), _wild_scalars,
                                    hnp.arrays(np.int64, (n,), elements=st.integers(-2, m + 2))),
                "num_classes": st.one_of(st.integers(-1, m + 2), _wild_scalars),
                "dataset_classes": st.one_of(st.lists(st.text(max_size=2), max_size=m + 2), _wild_scalars),
                "model_classes": st.one_of(st.lists(st.text(max_size=2), max_size=m + 2), _wild_scalars),
                "alpha": st.one_of(_values, _wild_scalars)}
    for key in draw(st.lists(st.sampled_from(sorted(breaking)), max_size=2, unique=True)):
        case[key] = draw(breaking[key])
    return case


def _check_labels(case: dict[str, Any], _workdir: Path) -> None:
    from dldebug import check_label_alignment

    result = check_label_alignment(**case)
    _round_trip(result.report)
    predictions, labels = np.asarray(case["predictions"]), np.asarray(case["labels"])
    predicted = predictions.argmax(1) if predictions.ndim == 2 else predictions
    expected = float(np.mean(predicted == labels))
    assert abs(result.accuracy - expected) < 1e-9, (result.accuracy, expected)


LABELS = Target("check_label_alignment", "dldebug.labels", label_cases(), _check_labels, 8000, 300)


# -- compare_models --------------------------------------------------------------------------------------
def _mlp(width: int, depth: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 2)).eval()


def _cnn(channels: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()


@st.composite
def compare_cases(draw: Any) -> dict[str, Any]:
    conv = draw(st.booleans())
    width = draw(st.integers(1, 6))
    a = _cnn(width, 0) if conv else _mlp(width, draw(st.integers(0, 2)), 0)
    relation = draw(st.sampled_from(["copy", "copy", "perturbed", "other"]))
    b = copy.deepcopy(a)
    if relation == "perturbed":
        with torch.no_grad():
            next(iter(b.parameters())).add_(draw(st.floats(1e-3, 10)))
    elif relation == "other":
        b = _mlp(draw(st.integers(1, 6)), 1, 1)
    shape = (draw(st.integers(1, 3)), width, 5, 5) if conv else (draw(st.integers(1, 3)), width)
    case = {"a": a, "b": b, "inputs": shape, "relation": relation, "input_kind": draw(st.sampled_from(["ones",
                                                                                                      "random"])),
            "rtol": 1e-4, "atol": 1e-5, "mode": draw(st.sampled_from(["propagate", "shadow"])), "mapping": None}
    if draw(st.booleans()):
        case["inputs"] = draw(tensors(shape, _float_dtypes, st.floats(-3, 3)))
    broken = {"inputs": st.one_of(st.none(), tensors(shape, _any_dtypes), tensors(),
                                  st.just(np.ones(shape, dtype=np.float32)), _wild_scalars),
              "input_kind": _wild_scalars, "rtol": _values, "atol": _values, "mode": st.just("both"),
              "mapping": st.dictionaries(st.sampled_from(["0", "1", "2", "x"]), st.sampled_from(["0", "1", "9"]),
                                         max_size=2)}
    for key in draw(st.sampled_from([[], [], [], *[[k] for k in sorted(broken)], ["rtol", "inputs"]])):
        case[key] = draw(broken[key])
    return case


def _check_compare(case: dict[str, Any], _workdir: Path) -> None:
    from dldebug import compare_models

    args = {k: v for k, v in case.items() if k not in ("a", "b", "inputs", "relation")}
    inputs = case["inputs"]
    user_error = _user_error(lambda: case["a"](inputs)) if isinstance(inputs, torch.Tensor) else None
    comparison = _run_allowing(user_error, lambda: compare_models(case["a"], case["b"], inputs, **args))
    if comparison is None:
        return
    _round_trip(comparison.report)
    if case["relation"] == "copy" and case["mapping"] is None and isinstance(case["inputs"], tuple) \
            and case["rtol"] == 1e-4 and case["atol"] == 1e-5:
        assert bool(comparison), f"a model differs from its own copy: {comparison.report.findings}"


COMPARE = Target("compare_models", "dldebug.compare", compare_cases(), _check_compare, 3000, 120)


# -- LocallyConnected2d ------------------------------------------------------------------------------------
_sizes = st.one_of(st.integers(-1, 6), st.tuples(st.integers(0, 6), st.integers(0, 6)),
                   st.lists(st.integers(0, 4), max_size=3), _wild_scalars, st.tuples(_huge, st.integers(1, 3)))


@st.composite
def locally_connected_cases(draw: Any) -> dict[str, Any]:
    """Constructor arguments (often valid, sometimes wild) and an input (often fitting)."""
    args: dict[str, Any] = {
        "in_channels": draw(st.integers(1, 3)), "out_channels": draw(st.integers(1, 3)),
        "input_size": (draw(st.integers(3, 8)), draw(st.integers(3, 8))), "kernel_size": draw(st.integers(1, 3)),
        "stride": draw(st.integers(1, 3)), "padding": draw(st.integers(0, 2)), "dilation": draw(st.integers(1, 2)),
        "bias": draw(st.booleans()), "padding_mode": draw(st.sampled_from(["zeros", "reflect", "replicate",
                                                                           "circular"])),
    }
    wild = {"in_channels": st.one_of(st.integers(-1, 64), _wild_scalars),
            "out_channels": st.one_of(st.integers(-1, 64), _wild_scalars), "input_size": _sizes,
            "kernel_size": _sizes, "stride": _sizes, "padding": _sizes, "dilation": _sizes,
            "bias": _wild_scalars, "padding_mode": st.one_of(st.text(max_size=5), _wild_scalars),
            "dtype": st.one_of(_any_dtypes, _wild_scalars)}
    for key in draw(st.sampled_from([[], [], [], *[[k] for k in sorted(wild)], ["stride", "dtype"]])):
        args[key] = draw(wild[key])
    batch = draw(st.integers(0, 2))
    fitting = (batch, args["in_channels"], *args["input_size"]) if isinstance(args["input_size"], tuple) \
        else (batch, args["in_channels"])
    if len(fitting) != 4 or not all(type(d) is int and 0 <= d <= 64 for d in fitting):
        fitting = (1, 1, 3, 3)
    dtype = args.get("dtype") if isinstance(args.get("dtype"), torch.dtype) else torch.float32
    x = draw(st.sampled_from(["fits", "fits", "fits", "dtype", "any", "wild"]).flatmap(lambda kind: {
        "fits": tensors(fitting, st.just(dtype), st.floats(-10, 10)), "dtype": tensors(fitting),
        "any": tensors(), "wild": _wild_scalars}[kind]))
    return {"args": args, "x": x}


def _naive_locally_connected(layer: Any, x: torch.Tensor, *, absolute: bool = False) -> torch.Tensor:
    """Per output location: pad, cut the dilated window, multiply by that location's own filter.

    ``absolute``: the same sums over ``|x|``, ``|weight|`` and ``|bias|``, the magnitude of the terms that a
    float32 result may lose to rounding where they cancel.
    """
    magnitude = torch.abs if absolute else (lambda t: t)
    pad_h, pad_w = layer.padding
    mode = {"zeros": "constant"}.get(layer.padding_mode, layer.padding_mode)
    padded = torch.nn.functional.pad(magnitude(x.double()), (pad_w, pad_w, pad_h, pad_h), mode=mode)
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.stride, layer.dilation
    out_h, out_w = layer.output_size
    out = torch.zeros(x.shape[0], layer.out_channels, out_h, out_w, dtype=torch.float64)
    for i in range(out_h):
        for j in range(out_w):
            window = padded[:, :, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]
            out[:, :, i, j] = torch.einsum("nchw,ochw->no", window, magnitude(layer.weight[i, j].detach().double()))
    if layer.bias is not None:
        out += magnitude(layer.bias.detach().double())
    return out


def _check_locally_connected(case: dict[str, Any], _workdir: Path) -> None:
    from dldebug.nn import LocallyConnected2d

    layer = LocallyConnected2d(**case["args"])
    assert repr(layer)
    out = layer(case["x"]).detach().double()
    expected = _naive_locally_connected(layer, case["x"])
    # Rounding error is relative to the terms summed, not to the result: where large terms cancel the
    # result is small and float32 keeps only ~1e-7 of the terms' size (the error bound of a dot product).
    terms = _naive_locally_connected(layer, case["x"], absolute=True)
    tolerance = 1e-2 if layer.weight.dtype in (torch.float16, torch.bfloat16) else 1e-4
    wrong = (out - expected).abs() > tolerance * (terms + 1.0)
    wrong |= out.isnan() != expected.isnan()
    if bool(wrong.any()):
        at = tuple(int(i) for i in wrong.nonzero()[0])
        raise AssertionError(f"output {float(out[at])!r} != naive {float(expected[at])!r} at {at} "
                             f"(terms of size {float(terms[at]):.3g}, tolerance {tolerance:g} of that)")


LOCALLY_CONNECTED = Target("LocallyConnected2d", "dldebug.nn", locally_connected_cases(), _check_locally_connected,
                           10000, 400)


# -- compress_linear_layers -------------------------------------------------------------------------------
@st.composite
def compress_cases(draw: Any) -> dict[str, Any]:
    width = draw(st.integers(1, 12))
    model = _mlp(width, draw(st.integers(0, 2)), draw(st.integers(0, 3)))
    rules = {"rank": st.integers(1, 14), "energy": st.floats(0.05, 1), "max_error": st.floats(0.01, 1),
             "param_ratio": st.floats(0.05, 1)}
    rule = draw(st.sampled_from(sorted(rules)))
    case: dict[str, Any] = {"model": model, rule: draw(rules[rule])}
    if rule == "max_error" or draw(st.booleans()):
        case["calib_data"] = draw(tensors((draw(st.integers(1, 9)), width), _float_dtypes, st.floats(-5, 5)))
    broken = {"rank": st.one_of(st.integers(-1, 0), _wild_scalars), "energy": _values, "max_error": _values,
              "param_ratio": _values, "calib_data": st.one_of(tensors(), _wild_scalars, tensors((0, width)),
                                                              st.lists(tensors((2, width), _float_dtypes), max_size=3)),
              "layers": st.one_of(st.lists(st.sampled_from(["0", "2", "4", "1", "x", ""]), max_size=3), _wild_scalars),
              "method": st.sampled_from(["auto", "exact", "gram", "randomized", "qr"]),
              "data_aware": st.one_of(st.booleans(), _wild_scalars)}
    for key in draw(st.sampled_from([[], [], *[[k] for k in sorted(broken)], ["rank", "energy"]])):
        case[key] = draw(broken[key])
    return case


def _check_compress(case: dict[str, Any], _workdir: Path) -> None:
    from dldebug.compress import compress_linear_layers

    model = case["model"]
    before = copy.deepcopy(model.state_dict())
    width = model[0].in_features
    calib = case.get("calib_data")
    user_error = _user_error(lambda: model(calib)) if isinstance(calib, torch.Tensor) else None
    try:
        result = _run_allowing(user_error, lambda: compress_linear_layers(**case))
    finally:
        _assert_untouched(model, before)
    if result is None:
        return
    _round_trip(result.report)
    x = torch.randn(3, width)
    with torch.no_grad():
        assert result.model(x).shape == model(x).shape
    assert result.model_params_after <= result.model_params_before


def _assert_untouched(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert set(after) == set(before), "the user's model lost or gained parameters"
    for name, value in before.items():
        assert torch.equal(after[name], value), f"the user's model was modified: {name}"


COMPRESS = Target("compress_linear_layers", "dldebug.compress", compress_cases(), _check_compress, 5000, 200)


# -- preflight ---------------------------------------------------------------------------------------------
@st.composite
def preflight_cases(draw: Any) -> dict[str, Any]:
    width, n, classes = draw(st.integers(1, 6)), draw(st.integers(1, 8)), draw(st.integers(1, 4))
    torch.manual_seed(draw(st.integers(0, 3)))
    model = nn.Sequential(nn.Linear(width, 8), nn.ReLU(), nn.Linear(8, classes))
    inputs = draw(st.one_of(tensors((n, width), _float_dtypes, st.floats(-3, 3)), tensors()))
    targets = draw(st.one_of(tensors((n,), st.just(torch.int64), st.floats(0, classes - 1)), tensors(),
                             tensors((n,), st.just(torch.int64), st.floats(-2, classes + 2))))
    batch: Any = draw(st.sampled_from([(inputs, targets), [inputs, targets], (inputs,), inputs, None]))
    loss_fn = draw(st.sampled_from([nn.CrossEntropyLoss(), nn.MSELoss(), nn.functional.cross_entropy,
                                    lambda out, y: out.sum(), lambda out, y: 1.0, lambda out, y: out, None]))
    lr = draw(st.sampled_from([1e-2, 0.0, 1e9, -1.0, float("nan")]))
    optimizer = draw(st.sampled_from(["sgd", "adam", "other model", "none"]))
    return {"model": model, "batch": batch, "loss_fn": loss_fn, "lr": lr, "optimizer": optimizer,
            "overfit_steps": draw(st.sampled_from([0, 1, 3, -1])),
            "checks": draw(st.one_of(st.none(), st.lists(st.sampled_from(["preflight.cannot_overfit", "x"]),
                                                         max_size=2)))}


def _optimizer(kind: str, model: nn.Module, lr: float) -> Any:
    if kind == "none":
        return None
    params = model.parameters() if kind != "other model" else nn.Linear(2, 2).parameters()
    try:
        return (torch.optim.Adam if kind == "adam" else torch.optim.SGD)(params, lr=lr)
    except ValueError:  # torch refuses a negative or NaN lr itself: give the default one
        return torch.optim.SGD(params, lr=1e-2)


def _check_preflight(case: dict[str, Any], _workdir: Path) -> None:
    from dldebug.preflight import preflight  # not `from dldebug import`: see docs/reliability.md, C13

    model = case["model"]
    optimizer = _optimizer(case["optimizer"], model, case["lr"])
    before = copy.deepcopy(model.state_dict())
    state_before = copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None
    try:
        report = preflight(model, case["batch"], case["loss_fn"], optimizer, overfit_steps=case["overfit_steps"],
                           checks=case["checks"])
    finally:
        _assert_untouched(model, before)
        if optimizer is not None:
            assert optimizer.state_dict() == state_before, "the user's optimizer was modified"
    _round_trip(report)


PREFLIGHT = Target("preflight", "dldebug.preflight", preflight_cases(), _check_preflight, 1500, 80)


# -- probe_equivariance -------------------------------------------------------------------------------------
def _pointwise(channels: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 3, 1), nn.ReLU(), nn.Conv2d(3, 2, 1))


def _strided(channels: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 3, 3, stride=2, padding=1), nn.MaxPool2d(2, ceil_mode=True),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 2))


@st.composite
def equivariance_cases(draw: Any) -> dict[str, Any]:
    channels = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["pointwise", "strided", "identity"]))
    model = {"pointwise": _pointwise, "strided": _strided}.get(kind, lambda c: nn.Identity())(channels)
    side = draw(st.integers(1, 9))
    shape = (draw(st.integers(1, 2)), channels, side, draw(st.sampled_from([side, side + 1])))
    x = draw(st.one_of(tensors(shape, st.just(torch.float32), st.floats(-3, 3)),
                       tensors(shape, _any_dtypes), tensors(max_dims=5), _wild_scalars))
    case = {"model": model, "x": x, "kind": kind,
            "transforms": draw(st.one_of(st.just(("translate",)), st.lists(st.sampled_from(
                ["translate", "hflip", "rot90", "zoom", ""]), max_size=3).map(tuple), _wild_scalars)),
            "shifts": draw(st.one_of(st.just((1, 2)), st.lists(st.integers(-3, 20), max_size=3).map(tuple),
                                     _wild_scalars)),
            "task": draw(st.sampled_from(["dense", "classification", "segmentation"])),
            "tolerance": draw(st.one_of(st.just(1e-3), _values, _wild_scalars))}
    return case


def _check_equivariance(case: dict[str, Any], _workdir: Path) -> None:
    from dldebug import probe_equivariance

    model, x = case["model"], case["x"]
    user_error = _user_error(lambda: model(x)) if isinstance(x, torch.Tensor) else None
    model.train()
    before = copy.deepcopy(model.state_dict())
    args = {k: case[k] for k in ("transforms", "shifts", "task", "tolerance")}
    try:
        report = _run_allowing(user_error, lambda: probe_equivariance(model, x, **args))
    finally:
        assert model.training, "the model's mode was not restored"
        _assert_untouched(model, before)
    if report is None:
        return
    _round_trip(report)
    if case["kind"] != "strided" and args["transforms"] == ("translate",) and args["task"] == "dense" \
            and args["tolerance"] == 1e-3 and x.dtype == torch.float32 and torch.isfinite(x).all():
        assert not report.has("equivariance.broken"), f"a pointwise model is equivariant: {report.findings}"


EQUIVARIANCE = Target("probe_equivariance", "dldebug.checks", equivariance_cases(), _check_equivariance, 4000, 150)

API_TARGETS = (CURVE, CTC, LABELS, COMPARE, LOCALLY_CONNECTED, COMPRESS, PREFLIGHT, EQUIVARIANCE)
