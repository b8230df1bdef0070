"""``dldebug compress``: a factory model + weights + calibration file -> a loadable .pt2 archive."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dldebug.cli.app import main
from dldebug.io import load_model

FACTORY = textwrap.dedent("""
    from torch import nn

    def build():
        return nn.Sequential(nn.Linear(48, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
""")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlp: nn.Sequential,
            correlated_inputs: torch.Tensor) -> Path:
    (tmp_path / "cz_models.py").write_text(FACTORY)
    torch.save(mlp.state_dict(), tmp_path / "weights.pt")
    np.save(tmp_path / "calib.npy", correlated_inputs.numpy())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_compress_writes_a_pt2_that_load_model_reads_back(workdir: Path, mlp: nn.Sequential,
                                                          correlated_inputs: torch.Tensor,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compress", "cz_models:build", "--weights", "weights.pt", "--energy", "0.95",
                 "--calib", "calib.npy", "--out", "small.pt2", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["findings"][0]["check"] == "compress.applied"
    loaded = load_model(workdir / "small.pt2")
    x = correlated_inputs[:7]  # a batch size never seen at export: the batch dimension is dynamic
    params = sum(p.numel() for p in loaded.parameters())
    assert params == report["findings"][0]["evidence"]["model_params_after"] < sum(
        p.numel() for p in mlp.parameters())
    with torch.no_grad():
        out, ref = loaded(x), mlp(x)
    assert out.shape == ref.shape
    assert float((out - ref).norm() / ref.norm()) < 0.3
    assert not list(workdir.glob(".small.pt2.*"))  # the atomic write left no temp file


def test_compress_with_rank_and_input_shape(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compress", "cz_models:build", "--rank", "4", "--input", "1x48", "--out", "r4.pt2"])
    assert code == 0
    assert "Compressed model written to r4.pt2" in capsys.readouterr().out
    assert sum(p.numel() for p in load_model(workdir / "r4.pt2").parameters()) < 5546


@pytest.mark.parametrize(("args", "message"), [
    (["--energy", "0.9", "--rank", "3", "--input", "1x48", "--out", "a.pt2"],
     "Give exactly one of rank, energy, max_error, param_ratio"),
    (["--energy", "0.9", "--out", "a.pt2"], "torch.export needs an example input: give --input SHAPE"),
    (["--energy", "0.9", "--input", "1x48", "--out", "a.pt"], "--out must end in .pt2"),
    (["--max-error", "0.1", "--input", "1x48", "--out", "a.pt2"], "max_error is measured on the layers' outputs"),
])
def test_bad_usage_exits_2_with_one_message(workdir: Path, args: list[str], message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compress", "cz_models:build", *args]) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split())
    assert "Traceback" not in err
