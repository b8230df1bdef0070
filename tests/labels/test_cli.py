"""``dldebug labels`` end to end: a module:factory model with --weights over the spelled-out digit folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from dldebug.cli.app import main
from dldebug.demo.labels import SPELLED

pytestmark = pytest.mark.slow

MODULE = '''
from dldebug.demo.digits import DigitsCNN


def build():
    return DigitsCNN()
'''


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trained_digits) -> Path:
    model, _ = trained_digits
    (tmp_path / "labels_cli_model.py").write_text(MODULE)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    (tmp_path / "classes.txt").write_text("\n".join(SPELLED) + "\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _args(folder_run, digit_folder: Path, *extra: str) -> list[str]:
    return ["labels", "labels_cli_model:build", str(digit_folder), "--weights", "weights.pt", "--grayscale",
            "--mean", repr(folder_run.mean), "--std", repr(folder_run.std), *extra]


def test_cli_finds_the_permutation_and_writes_a_usable_mapping(workdir: Path, digit_folder: Path, folder_run,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main(_args(folder_run, digit_folder, "--model-classes", "classes.txt", "--out", "mapping.json",
                      "--json"))
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    checks = [f["check"] for f in report["findings"]]
    assert checks == ["labels.permuted", "labels.order_mismatch"]
    document = json.loads((workdir / "mapping.json").read_text())
    assert document["class_to_idx"] == {name: SPELLED.index(name) for name in SPELLED}
    # ready to use: translating the loader's labels with index_list gives the model's true accuracy
    labels = folder_run.folder.labels
    translated = np.array(document["index_list"])[labels]
    true_accuracy = float((folder_run.logits.argmax(1) == folder_run.digits).mean())
    assert float((folder_run.logits.argmax(1) == translated).mean()) == pytest.approx(true_accuracy)
    assert document["aligned_accuracy"] == pytest.approx(true_accuracy)


def test_cli_fail_on_and_console_output(workdir: Path, digit_folder: Path, folder_run,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(_args(folder_run, digit_folder, "--out", "out/mapping.json", "--fail-on", "error"))
    assert code == 1
    out = capsys.readouterr().out
    assert "labels.permuted" in out and "Label mapping written to out/mapping.json" in out


@pytest.mark.parametrize(("extra", "message"), [
    (["--size", "8"], "--size takes HxW (two numbers), e.g. 224x224; got '8'."),
    (["--mean", "a,b"], "--mean takes numbers separated by commas, e.g. 0.485,0.456,0.406; got 'a,b'."),
    (["--model-classes", "missing.txt"], "missing.txt: class-name file not found."),
])
def test_cli_bad_options_exit_2_with_one_message(workdir: Path, digit_folder: Path, folder_run, extra: list[str],
                                                  message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_args(folder_run, digit_folder, *extra)) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert re.search(re.escape(message), err), err


@pytest.mark.onnx
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_cli_runs_an_onnx_model(workdir: Path, digit_folder: Path, folder_run, trained_digits,
                                capsys: pytest.CaptureFixture[str]) -> None:
    model, _ = trained_digits
    torch.onnx.export(model, (torch.zeros(2, 1, 8, 8),), str(workdir / "digits.onnx"), dynamo=False,
                      input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}})
    code = main(["labels", "digits.onnx", str(digit_folder), "--grayscale", "--mean", repr(folder_run.mean),
                 "--std", repr(folder_run.std), "--json", "--out", "onnx.json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert [f["check"] for f in report["findings"]] == ["labels.permuted"]
    document = json.loads((workdir / "onnx.json").read_text())
    assert document["index_list"] == [SPELLED.index(name) for name in sorted(SPELLED)]
