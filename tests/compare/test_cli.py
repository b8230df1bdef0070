"""``dldebug compare`` end to end: factory specs, ONNX and Keras files, --json, --shadow, --fail-on, errors."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dldebug.cli.app import main

MODELS = textwrap.dedent("""
    import torch
    from torch import nn

    def _base():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 8 * 8, 5))

    def good():
        return _base()

    def corrupt():
        model = _base()
        with torch.no_grad():
            model[4].weight[0, 0] += 1.0
        return model
""")


@pytest.fixture()
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    name = f"cmp_models_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLDEBUG_MODULE", name)
    return tmp_path


class _Result:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.exit_code, self.stdout, self.output = code, stdout, stdout + stderr


@pytest.fixture()
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    def invoke(*args: str) -> _Result:
        capsys.readouterr()
        code = main(["compare", *args])
        out = capsys.readouterr()
        return _Result(code, out.out, out.err)
    return invoke


def _module() -> str:
    import os

    return os.environ["DLDEBUG_MODULE"]


def test_json_report_names_first_divergence(models_dir: Path, cli: Any) -> None:
    m = _module()
    result = cli(f"{m}:good", f"{m}:corrupt", "--shape", "1x3x8x8", "--json", "--fail-on", "error")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    diverged = next(f for f in report["findings"] if f["check"] == "compare.diverged")
    assert diverged["evidence"]["layer_a"] == "4"
    assert report["tables"][0]["name"] == "compare.layers"


def test_shadow_html_and_tensor_input(models_dir: Path, cli: Any) -> None:
    m = _module()
    np.save(models_dir / "x.npy", np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32))
    result = cli(f"{m}:good", f"{m}:good", "--input", "x.npy", "--shadow", "--html", "out.html",
                     "--fail-on", "error")
    assert result.exit_code == 0, result.output
    assert (models_dir / "out.html").stat().st_size > 1000


def test_torch_pair_without_shape_is_a_clear_error(models_dir: Path, cli: Any) -> None:
    m = _module()
    result = cli(f"{m}:good", f"{m}:good")
    assert result.exit_code == 2
    assert "cannot tell the input shape" in result.output


def test_missing_model_file(models_dir: Path, cli: Any) -> None:
    result = cli("nope.onnx", "nope2.onnx")
    assert result.exit_code == 2 and "Model file not found" in result.output


def test_bad_map_argument(models_dir: Path, cli: Any) -> None:
    m = _module()
    result = cli(f"{m}:good", f"{m}:good", "--shape", "1x3x8x8", "--map", "0-0")
    assert result.exit_code == 2 and "--map expects A_LAYER=B_LAYER" in result.output


@pytest.mark.onnx
def test_pt2_archive_vs_onnx_file(cli: Any, exported: dict[Any, Any]) -> None:
    result = cli(str(exported["pt2"]), str(exported[True]), "--input", "random", "--json", "--fail-on", "error")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["meta"]["framework_a"] == "torch" and report["meta"]["framework_b"] == "onnx"
    assert report["meta"]["input_shape"] == [1, 3, 16, 16]


@pytest.mark.keras
def test_keras_file_loads_with_safe_mode(models_dir: Path, keras3: Any, cli: Any) -> None:
    from dldebug.demo.keras_port import build_keras_cnn

    model = build_keras_cnn(keras3)
    model.save(models_dir / "cnn.keras")
    model.save(models_dir / "cnn.h5")
    result = cli("cnn.keras", "cnn.h5", "--json", "--fail-on", "error")
    assert result.exit_code == 0, result.output
    lam = keras3.Sequential([keras3.Input((3,)), keras3.layers.Lambda(lambda t: t * 2)])
    lam.save(models_dir / "lambda.keras")
    refused = cli("lambda.keras", "lambda.keras")
    assert refused.exit_code == 2 and "refused to load" in refused.output
