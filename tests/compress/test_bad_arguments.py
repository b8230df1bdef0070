"""Wrong-type, out-of-range and degenerate arguments of the compression API: one clear error each.

Regression tests for docs/reliability.md, crashes C6 (``layers=`` that is not a list of names) and C7
(0-d or zero-feature ``calib_data``), and for the sweep of every other public argument of
compress_linear_layers, lowrank_linear and accuracy_vs_size (bools as numbers, NaN/inf, numpy
scalars, callables that are not, NaN weights or inputs). The user's model is never modified.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from dldebug.compress import accuracy_vs_size, compress_linear_layers, lowrank_linear, truncated_svd
from dldebug.compress.calibration import collect_layer_inputs
from dldebug.errors import ConfigError, DldebugError, InputError


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))


def _nan_layer() -> nn.Linear:
    fc = nn.Linear(8, 8)
    with torch.no_grad():
        fc.weight[2, 3] = float("nan")
        fc.weight[0, 0] = float("inf")
    return fc


_LAYERS = "layers must be a list of layer names; got "
_CALIB = "calib_data must be a batch of inputs; layer '0' expects (N, features...) with at least one feature but "


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    # C6: layers= that is not a list of names
    ({"rank": 1, "layers": 3}, InputError, _LAYERS + "3."),
    ({"rank": 1, "layers": True}, InputError, _LAYERS + "True (a bool)."),
    ({"rank": 1, "layers": 0.5}, InputError, _LAYERS + "0.5."),
    ({"rank": 1, "layers": torch.tensor(0)}, InputError,
     _LAYERS + "a Tensor of shape () (a number is expected: use .item())."),
    ({"rank": 1, "layers": [0]}, InputError, "layers[0] must be a name (a str); got 0. Pass the layer names as "
                                             "strings."),
    ({"rank": 1, "layers": ["0", None]}, InputError, "layers[1] must be a name (a str); got None."),
    ({"rank": 1, "layers": []}, InputError, "layers is empty, so there is nothing to compress"),
    # C7: 0-d and zero-feature calib_data
    ({"rank": 1, "calib_data": torch.tensor(0.0)}, InputError, _CALIB + "received shape ()."),
    ({"rank": 1, "calib_data": torch.zeros(3, 0)}, InputError, _CALIB + "received shape (3, 0)."),
    ({"rank": 1, "calib_data": [torch.tensor(1.0)]}, InputError, _CALIB + "received shape ()."),
    ({"rank": 1, "calib_data": torch.zeros(0, 8)}, InputError,
     "calib_data gave layer '0' no input rows (every batch is empty); give at least one sample."),
    ({"max_error": 0.1, "calib_data": torch.full((4, 8), float("nan"))}, InputError,
     "layer '0' received 32 NaN/inf input value(s) on calib_data"),
    ({"rank": 1, "calib_data": torch.full((4, 8), float("inf"))}, InputError,
     "layer '0' received 32 NaN/inf input value(s) on calib_data"),
    ({"rank": 1, "calib_data": np.zeros((4, 8), dtype=np.float32)}, InputError,
     "calib_data must be torch tensors; got an ndarray of shape (4, 8). Convert it with "
     "torch.from_numpy(array).float()"),
    ({"rank": 1, "calib_data": np.array(0.5)}, InputError, "calib_data must be torch tensors; got an ndarray"),
    # the rank rules: bools are not numbers, NaN/inf never pass, strings are not numbers
    ({"rank": True}, ConfigError, "rank must be a positive int; got True (a bool)."),
    ({"rank": 2.0}, ConfigError, "rank must be a positive int; got 2.0."),
    ({"energy": True}, ConfigError, "energy is the fraction of spectral energy to keep, in (0, 1]; got True "
                                    "(a bool)."),
    ({"energy": "0.9"}, ConfigError, "in (0, 1]; got '0.9' (a str)."),
    ({"energy": float("nan")}, ConfigError, "in (0, 1]; got nan."),
    ({"energy": torch.tensor([0.5, 0.9])}, ConfigError, "in (0, 1]; got a Tensor of shape (2,)."),
    ({"max_error": float("inf"), "calib_data": torch.randn(4, 8)}, ConfigError,
     "max_error is a relative output error budget per layer, a finite number > 0 (e.g. 0.05); got inf."),
    ({"param_ratio": [0.5]}, ConfigError, "param_ratio is the fraction of the layers' parameters to keep, in "
                                          "(0, 1); got [0.5] (a list)."),
    # flags, method, eval_fn, max_accuracy_drop
    ({"rank": 1, "inplace": "yes"}, ConfigError, "inplace must be True or False; got 'yes' (a str)."),
    ({"rank": 1, "data_aware": "no", "calib_data": torch.randn(4, 8)}, ConfigError,
     "data_aware must be True, False or None; got 'no' (a str)."),
    ({"rank": 1, "data_aware": torch.tensor([1, 0])}, ConfigError, "data_aware must be True, False or None"),
    ({"rank": 1, "method": 3}, ConfigError, "Unknown SVD method 3; choose one of ['auto', 'exact', 'gram', "
                                            "'randomized']."),
    ({"rank": 1, "method": "qr"}, ConfigError, "Unknown SVD method 'qr'"),
    ({"rank": 1, "eval_fn": 0.9}, InputError, "eval_fn must be a function model -> accuracy (higher is better); "
                                              "got 0.9."),
    ({"rank": 1, "eval_fn": lambda m: None}, InputError,
     "eval_fn must return one finite number (an accuracy, higher is better); it returned None."),
    ({"rank": 1, "eval_fn": lambda m: "0.9"}, InputError, "it returned '0.9' (a str)."),
    ({"rank": 1, "eval_fn": lambda m: float("nan")}, InputError, "it returned nan."),
    ({"rank": 1, "eval_fn": lambda m: torch.ones(2)}, InputError, "it returned a Tensor of shape (2,)."),
    ({"rank": 1, "max_accuracy_drop": -0.1}, ConfigError,
     "max_accuracy_drop must be a finite number >= 0 (0.01 = 1 point); got -0.1."),
    ({"rank": 1, "max_accuracy_drop": None}, ConfigError, "max_accuracy_drop must be a finite number >= 0"),
])
def test_compress_bad_arguments(kwargs: dict, error: type[DldebugError], message: str) -> None:
    model = _net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(error) as info:
        compress_linear_layers(model, **kwargs)
    assert message in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_model_that_is_not_a_module() -> None:
    with pytest.raises(InputError, match=re.escape("model must be a torch nn.Module; got 3.")):
        compress_linear_layers(3, rank=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"rank": np.int64(2)}, {"energy": np.float32(0.3)}, {"layers": "0"},
                                    {"rank": 2, "layers": np.array(["0", "2"])}, {"rank": 2, "inplace": np.False_}])
def test_numpy_scalars_single_names_and_arrays_are_accepted(kwargs: dict) -> None:
    kwargs = {"rank": 2, **kwargs} if "energy" not in kwargs and "rank" not in kwargs else kwargs
    result = compress_linear_layers(_net(), **kwargs)
    assert result.params_after < result.params_before


@pytest.mark.parametrize("value", [torch.tensor(0.75), np.float32(0.75), np.array([0.75]), 1])
def test_eval_fn_may_return_a_one_element_tensor_or_numpy_number(value: object) -> None:
    result = compress_linear_layers(_net(), rank=2, eval_fn=lambda m: value)
    assert result.accuracy_before == result.accuracy_after == pytest.approx(float(np.asarray(value).item()))


def test_nan_weights_are_refused_naming_the_layer() -> None:
    model = nn.Sequential(_nan_layer(), nn.ReLU(), nn.Linear(8, 4))
    message = ("layer '0' has 2 non-finite weight(s) (NaN or inf) of 64; the SVD cannot factorise it. Fix the "
               "weights first")
    for kwargs in ({"energy": 0.9}, {"param_ratio": 0.5}, {"rank": 1}):
        with pytest.raises(InputError, match=re.escape(message)):
            compress_linear_layers(model, **kwargs)
    assert compress_linear_layers(model, rank=1, layers=["2"]).params_after < 8 * 4 + 4  # the healthy one
    with pytest.raises(InputError, match=re.escape("layer 'Linear' has 2 non-finite weight(s)")):
        lowrank_linear(_nan_layer(), 2)


@pytest.mark.parametrize(("rank", "message"), [
    (True, "rank must be an int in 1..8 for a 8 x 8 layer; got True (a bool)."),
    (None, "rank must be an int in 1..8 for a 8 x 8 layer; got None."),
    ("2", "rank must be an int in 1..8 for a 8 x 8 layer; got '2' (a str)."),
])
def test_lowrank_linear_bad_rank(rank: object, message: str) -> None:
    with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
        lowrank_linear(nn.Linear(8, 8), rank)  # type: ignore[arg-type]


def test_lowrank_linear_takes_a_numpy_rank() -> None:
    fc = nn.Linear(8, 8)
    pair = lowrank_linear(fc, np.int64(8))  # type: ignore[arg-type]
    x = torch.randn(3, 8)
    assert torch.allclose(pair(x), fc(x), atol=1e-5)


_RATIOS = "param_ratios must be a non-empty list of values in (0, 1); got "


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"eval_fn": None}, InputError, "eval_fn must be a function model -> accuracy (higher is better); got None."),
    ({"eval_fn": "accuracy"}, InputError, "eval_fn must be a function"),
    ({"eval_fn": lambda m: [1.0]}, InputError, "eval_fn must return one finite number"),
    ({"param_ratios": 0.5}, ConfigError, _RATIOS + "0.5."),
    ({"param_ratios": "0.5"}, ConfigError, _RATIOS + "'0.5' (a str)."),
    ({"param_ratios": None}, ConfigError, _RATIOS + "None."),
    ({"param_ratios": []}, ConfigError, _RATIOS + "[]."),
    ({"param_ratios": np.array(0.5)}, ConfigError, _RATIOS + "an ndarray of shape ()"),
    ({"param_ratios": torch.tensor(0.5)}, ConfigError, _RATIOS + "a Tensor of shape ()"),
    ({"param_ratios": [0.5, True]}, ConfigError, _RATIOS + "[0.5, True] (a list), whose entry 1 is True (a bool)."),
    ({"param_ratios": [None]}, ConfigError, _RATIOS + "[None] (a list), whose entry 0 is None."),
    ({"param_ratios": [float("nan")]}, ConfigError, "whose entry 0 is nan."),
    ({"layers": 3}, InputError, _LAYERS + "3."),
    ({"calib_data": torch.tensor(0.0)}, InputError, _CALIB + "received shape ()."),
    ({"data_aware": "x"}, ConfigError, "data_aware must be True, False or None; got 'x' (a str)."),
    ({"method": None}, ConfigError, "Unknown SVD method None"),
    ({"max_accuracy_drop": float("inf")}, ConfigError, "max_accuracy_drop must be a finite number >= 0"),
])
def test_accuracy_vs_size_bad_arguments(kwargs: dict, error: type[DldebugError], message: str) -> None:
    arguments = {"eval_fn": lambda m: 1.0, "param_ratios": [0.5], **kwargs}
    with pytest.raises(error) as info:
        accuracy_vs_size(_net(), **arguments)
    assert message in str(info.value)


def test_accuracy_vs_size_takes_numpy_ratios_and_tensor_scores() -> None:
    x = torch.randn(64, 8)
    model = _net()
    with torch.no_grad():
        reference = model(x)

    def agreement(m: nn.Module) -> torch.Tensor:
        with torch.no_grad():
            return (m(x).argmax(1) == reference.argmax(1)).float().mean()

    curve = accuracy_vs_size(model, agreement, param_ratios=np.array([0.9, 0.3]))
    assert [p.param_ratio for p in curve.points] == [0.9, 0.3]
    assert curve.original.accuracy == 1.0


def test_unbatched_input_of_a_1x1_conv_is_read_channel_first() -> None:
    # An nn.Conv2d takes (C, H, W) unbatched; its rows were read along H before (a shape error in the SVD).
    conv = nn.Sequential(nn.Conv2d(3, 6, 1))
    x = torch.randn(3, 5, 5)
    rows = collect_layer_inputs(conv, {"0": conv[0]}, x)["0"]
    assert rows.shape == (25, 3)
    assert torch.equal(rows, x.permute(1, 2, 0).reshape(-1, 3))  # oracle: every pixel's channel vector
    batched = collect_layer_inputs(conv, {"0": conv[0]}, x[None])["0"]
    assert torch.equal(rows, batched)


@pytest.mark.parametrize(("matrix", "k", "error", "message"), [
    (torch.ones(3), None, InputError, "matrix must be a 2-D float tensor; got a Tensor of shape (3,) of "
                                      "torch.float32."),
    (torch.ones(3, 3, dtype=torch.int64), None, InputError, "matrix must be a 2-D float tensor; got a Tensor of "
                                                            "shape (3, 3) of torch.int64."),
    (np.ones((3, 3)), None, InputError, "matrix must be a 2-D float tensor; got an ndarray of shape (3, 3)."),
    (torch.ones(3, 4), "2", ConfigError, "k must be in 1..3 for a 3 x 4 matrix; got '2' (a str)."),
    (torch.ones(3, 4), True, ConfigError, "k must be in 1..3 for a 3 x 4 matrix; got True (a bool)."),
    (torch.ones(3, 4), 4, ConfigError, "k must be in 1..3 for a 3 x 4 matrix; got 4."),
])
def test_truncated_svd_bad_arguments(matrix: object, k: object, error: type, message: str) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        truncated_svd(matrix, k)  # type: ignore[arg-type]
