"""`dldebug lr`: the scaled value and the warm-up schedule."""

from __future__ import annotations

import pytest

from dldebug import Report
from dldebug.cli.app import main


def test_lr_command_json(capsys):
    code = main(["lr", "--base-lr", "0.1", "--base-batch", "256", "--batch", "8192", "--optimizer", "sgd",
                 "--warmup-epochs", "5", "--steps-per-epoch", "10", "--json"])
    report = Report.from_json(capsys.readouterr().out)
    assert code == 0
    assert report.get("lr.scaled").evidence["lr"] == pytest.approx(3.2)
    rows = report.table("lr.warmup_schedule").records()
    assert rows[0]["lr"] == pytest.approx(0.1) and rows[-1]["lr"] == pytest.approx(3.2)
    assert rows[-1]["step"] == 50


def test_lr_command_adam_uses_sqrt(capsys):
    assert main(["lr", "--base-lr", "0.001", "--base-batch", "64", "--batch", "1024", "--optimizer", "adam"]) == 0
    assert "sqrt" in capsys.readouterr().out


def test_lr_command_needs_steps_per_epoch_for_warmup(capsys):
    code = main(["lr", "--base-lr", "0.1", "--base-batch", "256", "--batch", "512", "--warmup-epochs", "5"])
    assert code == 2
    assert "a warm-up needs steps_per_epoch" in capsys.readouterr().err
