"""compare_models' arguments: half-precision inputs (fuzzer C9), wrong-type/NaN/empty options and inputs
(C10 and the sweep around it): a correct result or one clear DldebugError, never a raw TypeError."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from dldebug import compare_models
from dldebug.errors import ConfigError, InputError

X = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def _linear() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_input_is_upcast_and_said(dtype: torch.dtype, make_cnn: Any) -> None:
    model = make_cnn()
    half = X.to(dtype)
    bad = copy.deepcopy(model)
    with torch.no_grad():
        bad[4].weight.mul_(1.01)
    result = compare_models(model, bad, half)
    oracle = compare_models(model, bad, half.float())  # what the user meant: the same values in float32
    assert result.first_divergence is not None and result.first_divergence.layer_a == "4"
    assert [r.layer_a for r in result.divergences] == [r.layer_a for r in oracle.divergences]
    assert [r.metrics for r in result.rows] == [r.metrics for r in oracle.rows]
    name = str(dtype).replace("torch.", "")
    assert result.settings["converted_inputs"] == [f"input #0: {name} -> float32"]
    finding = result.report.get("compare.input_dtype")
    assert finding is not None and name in finding.message
    assert compare_models(model, copy.deepcopy(model), input_kind=half)  # the tensor given as input_kind too


def test_bfloat16_model_runs_in_its_own_precision() -> None:
    model = _linear().to(torch.bfloat16)
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    result = compare_models(model, copy.deepcopy(model), x)
    assert result and result.rows[-1].metrics is not None
    with torch.no_grad():
        expected = model(x).float().numpy()
    assert result.rows[-1].metrics["mean_a"] == pytest.approx(float(expected.mean()), abs=1e-6)


@pytest.mark.parametrize(("kwargs", "text"), [
    ({"rtol": "x"}, "rtol must be a finite number >= 0; got 'x' (str). Pass e.g. rtol=1e-4."),
    ({"atol": "1e-3"}, "atol must be a finite number >= 0; got '1e-3' (str)."),
    ({"rtol": None}, "rtol must be a finite number >= 0; got None (NoneType)."),
    ({"rtol": True}, "rtol must be a finite number >= 0; got True (bool)."),
    ({"rtol": math.nan}, "rtol must be a finite number >= 0; got nan (float)."),
    ({"atol": math.inf}, "atol must be a finite number >= 0; got inf (float)."),
    ({"rtol": -1e-4}, "rtol must be a finite number >= 0; got -0.0001 (float)."),
    ({"rtol": 0, "atol": 0}, "rtol and atol must not both be 0"),
    ({"input_kind": 5}, "input_kind must be 'ones', 'random' or a tensor; got 5 (int)."),
    ({"input_kind": None}, "input_kind must be 'ones', 'random' or a tensor; got None (NoneType)."),
    ({"input_kind": [1.0, 2.0]}, "input_kind must be 'ones', 'random' or a tensor; got [1.0, 2.0] (list)."),
    ({"mode": 5}, "mode must be one of ['propagate', 'shadow']; got 5."),
    ({"mode": np.array([1, 2])}, "mode must be one of ['propagate', 'shadow']"),
    ({"mapping": ["0", "0"]}, "mapping must be a dict {a_layer_name: b_layer_name} of strings; got ['0', '0']."),
    ({"mapping": "0=0"}, "mapping must be a dict {a_layer_name: b_layer_name} of strings; got '0=0'."),
    ({"mapping": {0: 0}}, "mapping must be a dict {a_layer_name: b_layer_name} of strings; got {0: 0}."),
    ({"seed": "x", "input_kind": "random"}, "seed must be an integer >= 0; got 'x' (str)."),
    ({"seed": -1, "input_kind": "random"}, "seed must be an integer >= 0; got -1 (int)."),
    ({"seed": 1.5, "input_kind": "random"}, "seed must be an integer >= 0; got 1.5 (float)."),
])
def test_bad_options_are_one_config_error(kwargs: dict[str, Any], text: str) -> None:
    model = _linear()
    with pytest.raises(ConfigError) as info:
        compare_models(model, copy.deepcopy(model), **({"inputs": (1, 3)} if "input_kind" not in kwargs
                                                        or kwargs["input_kind"] == "random" else {}), **kwargs)
    assert text in str(info.value)


@pytest.mark.parametrize(("inputs", "text"), [
    (torch.full((1, 3), math.nan), "input #0 holds 3 NaN/Inf value(s) of 3"),
    (np.array([[1.0, np.inf, 0.0]], np.float32), "input #0 holds 1 NaN/Inf value(s) of 3"),
    ({"x": torch.ones(0, 3)}, "input 'x' has shape [0, 3]: no elements"),
    (torch.ones(1, 0), "input #0 has shape [1, 0]: no elements"),
    ((0, 3), "input shape [0, 3] has a size <= 0"),
    ((-1, 3), "input shape [-1, 3] has a size <= 0"),
    ((10**6, 10**6), "input shape [1000000, 1000000] has 1,000,000,000,000 elements"),
    ({1: torch.ones(1, 3)}, "inputs dict keys must be input names (strings); got 1."),
    ((None,), "inputs must be numeric tensors or arrays; got one of dtype object."),
    (torch.ones(1, 3, dtype=torch.complex64), "inputs must be numeric tensors or arrays; got one of dtype complex64."),
    ({}, "inputs is an empty dict"),
    ((), "inputs is an empty tuple"),
])
def test_bad_inputs_are_one_input_error(inputs: Any, text: str) -> None:
    model = _linear()
    with pytest.raises(InputError) as info:
        compare_models(model, copy.deepcopy(model), inputs)
    assert text in str(info.value)


def test_scalar_input_stays_a_scalar() -> None:
    """A 0-d input reaches the model as 0-d (it used to become shape [1]), so the model's own error is shown."""
    model = _linear()
    with pytest.raises(InputError, match=r"failed on inputs \[\] float32"):
        compare_models(model, copy.deepcopy(model), torch.tensor(1.0))


def test_numpy_scalars_are_accepted_as_options() -> None:
    model = _linear()
    result = compare_models(model, copy.deepcopy(model), (2, 3), input_kind="random", rtol=np.float32(1e-4),
                            atol=np.float64(0), seed=np.int64(3))
    assert result and result.settings["rtol"] == pytest.approx(1e-4) and isinstance(result.settings["rtol"], float)


def test_cli_nan_tolerance_is_exit_2(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from dldebug.cli.app import main

    name = f"cmp_args_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text("from torch import nn\n\ndef build():\n"
                                         "    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))\n")
    monkeypatch.chdir(tmp_path)
    code = main(["compare", f"{name}:build", f"{name}:build", "--shape", "1x3", "--rtol", "nan"])
    out = capsys.readouterr()
    assert code == 2, out
    assert "rtol must be a finite number >= 0; got nan" in out.out + out.err
    assert "Traceback" not in out.out + out.err
