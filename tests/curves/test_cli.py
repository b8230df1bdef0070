"""``dldebug curve``: exit statuses, JSON and HTML output, --metric, --partial, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from dldebug.cli.app import main


def write_log(path: Path, values: np.ndarray, cut: bool = False) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "train_loss", "val_acc"])
        writer.writerows([[10 * i, float(v), 0.5] for i, v in enumerate(values)])
    if cut:
        text = path.read_text()
        path.write_text(text[: len(text) - 9])
    return path


@pytest.fixture
def stuck_log(tmp_path: Path, families) -> Path:
    return write_log(tmp_path / "stuck.csv", families.flat(200))


@pytest.fixture
def healthy_log(tmp_path: Path, families) -> Path:
    return write_log(tmp_path / "healthy.csv", families.healthy(300, 0.05))


def test_json_output_and_fail_on(stuck_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["curve", str(stuck_log), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [f["check"] for f in report["findings"]] == ["loss.stuck"]
    assert report["findings"][0]["evidence"]["end_step"] == 1990
    assert report["meta"]["format"] == "csv" and report["meta"]["metric"] == "train_loss"
    assert main(["curve", str(stuck_log), "--fail-on", "error"]) == 1


def test_healthy_log_passes_fail_on_warning(healthy_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["curve", str(healthy_log), "--fail-on", "warning"]) == 0
    assert "no findings" in capsys.readouterr().out


def test_html_draws_the_curve(stuck_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "curve.html"
    assert main(["curve", str(stuck_log), "--html", str(out)]) == 0
    html = out.read_text()
    assert "loss.stuck" in html and "train_loss (smoothed)" in html
    assert "HTML report written to" in capsys.readouterr().out


def test_metric_and_mode(stuck_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["curve", str(stuck_log), "--metric", "val_acc", "--json"]) == 0
    finding = json.loads(capsys.readouterr().out)["findings"][0]
    assert finding["check"] == "loss.stuck" and finding["evidence"]["mode"] == "max"
    assert main(["curve", str(stuck_log), "--metric", "val_acc", "--mode", "min", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["findings"][0]["evidence"]["mode"] == "min"


def test_unknown_metric_lists_the_available_ones(stuck_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["curve", str(stuck_log), "--metric", "loss"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no metric named 'loss'; available metrics: train_loss, val_acc." in err


def test_damaged_log_and_partial(tmp_path: Path, families, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_log(tmp_path / "cut.csv", families.flat(200), cut=True)
    assert main(["curve", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "cut.csv, line 201: row has 2 fields but the header has 3" in err and "--partial" in err
    assert main(["curve", str(path), "--partial", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [f["check"] for f in report["findings"]] == ["loss.stuck", "log.truncated"]
    assert report["findings"][1]["evidence"]["line"] == 201


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["curve", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv: no such file or directory." in " ".join(capsys.readouterr().err.split())


def test_format_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "log.txt"
    path.write_text("".join(json.dumps({"step": i, "loss": 2.3}) + "\n" for i in range(30)))
    assert main(["curve", str(path), "--format", "jsonl", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["meta"]["format"] == "jsonl"
    assert main(["curve", str(path), "--format", "csv"]) == 2
    assert "no numeric metric could be read" in " ".join(capsys.readouterr().err.split())
