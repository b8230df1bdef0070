"""``dldebug compare`` on real ports: tf_keras files (.h5, .keras, SavedModel), factories returning Keras
models, named token inputs from an .npz, a readable table at 80 columns, no bug named on a correct port."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dldebug import compare_models
from dldebug.cli.app import main

FACTORIES = textwrap.dedent("""
    def tf_keras_cnn():
        import tf_keras
        from dldebug.demo.keras_port import build_keras_cnn
        return build_keras_cnn(tf_keras, seed=3)

    def keras3_cnn():
        import keras
        from dldebug.demo.keras_port import build_keras_cnn
        return build_keras_cnn(keras, seed=3)

    def torch_port():
        import tf_keras
        from dldebug.demo.keras_port import build_keras_cnn, port_to_torch
        return port_to_torch(build_keras_cnn(tf_keras, seed=3))

    def keras3_port_eps():
        import keras
        from dldebug.demo.keras_port import build_keras_cnn, port_to_torch
        return port_to_torch(build_keras_cnn(keras, seed=3), bn_eps=1e-5)

    def not_a_model():
        return {"weights": 1}
""")


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    name = f"cmp_ports_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(FACTORIES)
    monkeypatch.chdir(tmp_path)
    return tmp_path, name


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["compare", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.keras
def test_tf_keras_files_and_factories_reach_the_cli(workdir: tuple[Path, str], tf_keras: Any,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    folder, module = workdir
    from dldebug.demo.keras_port import build_keras_cnn

    model = build_keras_cnn(tf_keras, seed=3)
    model.save(folder / "cnn.h5")
    model.save(folder / "cnn.keras")
    model.save(folder / "saved")  # a SavedModel folder
    for spec in ("cnn.h5", "cnn.keras", "saved"):
        code, out = _run(capsys, f"{module}:tf_keras_cnn", spec, "--fail-on", "error")
        assert code == 0, (spec, out)
    code, out = _run(capsys, f"{module}:torch_port", "cnn.h5", "--shadow", "--fail-on", "error", "--json")
    assert code == 0, out
    code, out = _run(capsys, f"{module}:not_a_model", "cnn.h5")
    assert code == 2 and "expected a torch.nn.Module, an ONNX model or a Keras model" in out


@pytest.mark.keras
def test_lambda_in_an_h5_file_is_refused_before_loading(workdir: tuple[Path, str], tf_keras: Any,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    folder, _ = workdir
    model = tf_keras.Sequential([tf_keras.Input((3,)), tf_keras.layers.Lambda(lambda t: t * 2)])
    model.save(folder / "lambda.h5")
    code, out = _run(capsys, "lambda.h5", "lambda.h5")
    assert code == 2 and "refused to load" in out


@pytest.mark.keras
def test_table_is_readable_at_80_columns(workdir: tuple[Path, str], keras3: Any, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from dldebug.cli import common

    _, module = workdir
    monkeypatch.setattr(common.console, "width", 80)
    # a port with a planted BatchNorm eps bug: the table holds the finding, so the console prints it
    code, out = _run(capsys, f"{module}:keras3_cnn", f"{module}:keras3_port_eps", "--fail-on", "error")
    assert code == 1 and "batchnorm eps differs" in out, out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    header = next(line for line in lines if "layer a" in line)
    assert "layer b" in header and "status" in header  # whole words, not 3-character columns
    assert any("conv1" in line and "match" in line for line in lines)


@pytest.mark.keras
@pytest.mark.onnx
@pytest.mark.slow
def test_correct_tf2onnx_port_names_no_bug(keras3: Any, to_onnx: Any) -> None:
    """tf2onnx flattens in NHWC order too: fc1's stored weights are right, and no bug name is printed."""
    from dldebug.demo.keras_port import build_keras_cnn

    model = build_keras_cnn(keras3, seed=3)
    result = compare_models(model, to_onnx(model), input_kind="random")
    assert result, [r.row() for r in result.divergences]
    fc1 = next(r for r in result.rows if r.layer_a.startswith("fc1"))
    assert "not permuted" not in fc1.weights and fc1.weights.startswith("same")
    assert not result.report.filter(min_severity="warning")


@pytest.mark.onnx
@pytest.mark.slow
def test_token_inputs_from_an_npz(workdir: tuple[Path, str], hf_onnx: Any, tokens: dict[str, Any],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    import onnx

    folder, _ = workdir
    onnx.save(hf_onnx("bert", "dynamo"), str(folder / "bert.onnx"))
    np.savez(folder / "batch.npz", **{k: v.numpy() for k, v in tokens.items()})
    code, out = _run(capsys, "bert.onnx", "bert.onnx", "--input", "batch.npz", "--shadow", "--fail-on", "error")
    assert code == 0, out
