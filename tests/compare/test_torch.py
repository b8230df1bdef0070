"""PyTorch vs PyTorch: healthy copy, corrupted weight (shadow isolates it), errors, JSON, report."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import torch
from torch import nn

from dldebug import compare_models
from dldebug.compare import Comparison
from dldebug.errors import ConfigError, InputError, LayerNotFoundError

X = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def corrupted(model: nn.Sequential, index: int) -> nn.Sequential:
    bad = copy.deepcopy(model)
    with torch.no_grad():
        bad[index].weight.view(-1)[5] += 0.5
    return bad


def test_identical_copy_matches_everywhere(make_cnn: Any) -> None:
    model = make_cnn()
    result = compare_models(model, copy.deepcopy(model), X)
    assert result and result.first_divergence is None
    assert [r.layer_a for r in result.rows][:-1] == [str(i) for i in range(12)]
    assert all(r.weights in ("same", "n/a") for r in result.rows)
    assert result.report.ok and not result.report.has("compare.diverged")


@pytest.mark.parametrize("index", [0, 4, 9])
def test_shadow_names_exactly_the_corrupted_layer(index: int, make_cnn: Any) -> None:
    model = make_cnn()
    shadow = compare_models(model, corrupted(model, index), X, mode="shadow")
    assert [r.layer_a for r in shadow.divergences] == [str(index)]
    assert shadow.first_divergence is not None and shadow.first_divergence.layer_b == str(index)
    propagate = compare_models(model, corrupted(model, index), X)
    assert propagate.first_divergence is not None and propagate.first_divergence.layer_a == str(index)
    assert len(propagate.divergences) > 1  # the error propagates downstream


def test_weight_corruption_is_explained_as_differing_weights(make_cnn: Any) -> None:
    model = make_cnn()
    result = compare_models(model, corrupted(model, 4), X)
    finding = result.report.get("compare.diverged")
    assert finding is not None and finding.evidence["layer_a"] == "4"
    assert finding.evidence["likely_cause"] == "weights.differ"
    assert finding.lesson == 10


def test_json_round_trip_keeps_evidence(make_cnn: Any) -> None:
    model = make_cnn()
    result = compare_models(model, corrupted(model, 4), X)
    again = Comparison.from_json(result.to_json())
    assert again == result
    assert again.first_divergence is not None and again.first_divergence.metrics == result.first_divergence.metrics
    assert bool(again) is False
    json.loads(result.to_json())  # strict JSON (inf SQNR encoded)


def test_report_has_table_and_log_figure_with_marker(make_cnn: Any) -> None:
    model = make_cnn()
    result = compare_models(model, corrupted(model, 4), X)
    figure = result.report.figure("compare.layer_error")
    assert figure.logy and figure.markers[0][0] == 4.0 and "first divergence" in figure.markers[0][1]
    table = result.report.table("compare.layers")
    assert table.column("status")[4] == "diverged" and table.column("status")[3] == "match"


def test_unmatched_layers_are_listed(make_cnn: Any) -> None:
    model = make_cnn()
    extended = nn.Sequential(*copy.deepcopy(model), nn.Linear(10, 10))
    result = compare_models(model, extended, X)
    assert any("12 (Linear)" in name for name in result.unmatched_b)
    assert result.report.get("compare.unmatched") is not None


def test_explicit_mapping_overrides_matching(make_cnn: Any) -> None:
    model = make_cnn()
    result = compare_models(model, copy.deepcopy(model), X, mapping={"0": "0", "2": "6"})
    row = next(r for r in result.rows if r.layer_a == "2")
    assert row.layer_b == "6" and row.how == "mapping" and row.status != "match"


@pytest.mark.parametrize(("kwargs", "error", "text"), [
    ({"mode": "sideways"}, ConfigError, "mode must be one of ['propagate', 'shadow']; got 'sideways'."),
    ({"input_kind": "zeros"}, ConfigError, "input_kind must be 'ones', 'random' or a tensor; got 'zeros'."),
    ({"rtol": 0, "atol": 0}, ConfigError, "rtol and atol must not both be 0"),
    ({"mapping": {"conv9": "0"}}, LayerNotFoundError, "mapping names layer 'conv9', which model a does not have"),
])
def test_bad_arguments_raise_clear_errors(kwargs: dict, error: type, text: str, make_cnn: Any) -> None:
    model = make_cnn()
    with pytest.raises(error) as info:
        compare_models(model, copy.deepcopy(model), X, **kwargs)
    assert text in str(info.value)


def test_two_torch_models_need_a_shape(make_cnn: Any) -> None:
    model = make_cnn()
    with pytest.raises(InputError, match=r"cannot tell the input shape: neither model declares one"):
        compare_models(model, copy.deepcopy(model))
    assert compare_models(model, copy.deepcopy(model), (1, 3, 16, 16), input_kind="random")


def test_input_given_twice_is_refused(make_cnn: Any) -> None:
    model = make_cnn()
    with pytest.raises(ConfigError, match="give the input tensor once"):
        compare_models(model, model, X, input_kind=X)


def test_model_failing_on_input_names_the_side(make_cnn: Any) -> None:
    model = make_cnn()
    with pytest.raises(InputError, match=r"model a \(torch\) failed on inputs \[1, 3, 8, 8\] float32: RuntimeError"):
        compare_models(model, model, (1, 3, 8, 8))


def test_unsupported_model_type(make_cnn: Any) -> None:
    with pytest.raises(InputError, match="compare_models needs a torch.nn.Module, an ONNX model or a Keras model"):
        compare_models(object(), make_cnn(), X)


@pytest.mark.parametrize(("a", "b", "rule"), [
    (nn.GELU(), nn.GELU(approximate="tanh"), "gelu.approximate"),
    (nn.LeakyReLU(0.2), nn.LeakyReLU(), "leaky_relu.slope"),
    (nn.AvgPool2d(3, 1, padding=1, count_include_pad=False), nn.AvgPool2d(3, 1, padding=1),
     "avgpool.count_include_pad"),
    (nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
     nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), "resize.align_corners"),
])
def test_catalogue_explains_activation_and_resampling_defaults(a: nn.Module, b: nn.Module, rule: str) -> None:
    conv = nn.Conv2d(3, 4, 3, padding=1)
    model_a, model_b = nn.Sequential(conv, a).eval(), nn.Sequential(copy.deepcopy(conv), b).eval()
    result = compare_models(model_a, model_b, X)
    assert result.first_divergence is not None and result.first_divergence.layer_a == "1"
    assert result.first_divergence.explanations[0]["rule"] == rule
    same = compare_models(model_a, nn.Sequential(copy.deepcopy(conv), copy.deepcopy(a)).eval(), X)
    assert same and not same.report.has("compare.config_mismatch")


def test_layernorm_eps_mismatch_is_cited() -> None:
    model_a = nn.Sequential(nn.Linear(6, 6), nn.LayerNorm(6, eps=1e-3)).eval()
    model_b = copy.deepcopy(model_a)
    model_b[1].eps = 1e-5
    x = torch.full((1, 6), 0.01) + torch.arange(6) * 1e-3
    result = compare_models(model_a, model_b, x)
    finding = result.report.get("compare.config_mismatch")
    assert finding is not None and finding.evidence["eps_a"] == 1e-3 and finding.evidence["eps_b"] == 1e-5


def test_tensor_as_input_kind_and_report_round_trip(make_cnn: Any) -> None:
    from dldebug.findings import Report

    model = make_cnn()
    result = compare_models(model, corrupted(model, 0), input_kind=X)
    assert result.settings["input_shape"] == [1, 3, 16, 16] and result.settings["input_kind"] == "given"
    report = result.report
    assert Report.from_json(report.to_json()) == report
    assert not report and report.get("compare.diverged") is not None


def test_missing_keras_raises_an_import_error(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import sys
    import zipfile

    from dldebug.compare import load_compare_model
    from dldebug.errors import MissingDependencyError

    path = tmp_path / "model.keras"  # a Keras 3 archive's outline: read (and scanned) without Keras
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("config.json", json.dumps({"module": "keras", "class_name": "Sequential", "config": {}}))
    monkeypatch.setitem(sys.modules, "keras", None)  # makes `import keras` fail like a missing package
    with pytest.raises(ImportError) as info:
        load_compare_model(path)
    assert isinstance(info.value, MissingDependencyError)
    assert "pip install 'dldebug[keras]'" in str(info.value)
