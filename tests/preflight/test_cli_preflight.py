"""`dldebug preflight module:factory`."""

from __future__ import annotations

import textwrap

from dldebug import Report
from dldebug.cli.app import main

FACTORY = textwrap.dedent("""
    import torch
    from torch import nn

    def good():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
        x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
        return model, (x, y), nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=1e-2)

    def softmaxed():
        model, batch, loss_fn, opt = good()
        model.append(nn.Softmax(dim=1))
        return {"model": model, "batch": batch, "loss_fn": loss_fn, "optimizer": opt}

    def wrong():
        return 42
""")


def test_preflight_cli(tmp_path, monkeypatch, capsys):
    (tmp_path / "setups.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    assert main(["preflight", "setups:good", "--overfit-steps", "0", "--json", "--fail-on", "warning"]) == 0
    assert not Report.from_json(capsys.readouterr().out).findings
    assert main(["preflight", "setups:softmaxed", "--overfit-steps", "0", "--fail-on", "error"]) == 1
    assert "preflight.double_softmax" in capsys.readouterr().out
    assert main(["preflight", "setups:wrong"]) == 2
    assert "setups:wrong returned int; expected (model, batch, loss_fn, optimizer)" in capsys.readouterr().err
