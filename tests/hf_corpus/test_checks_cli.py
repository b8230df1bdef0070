"""`dldebug audit` and `dldebug preflight` on module:factory models returning Hugging Face models."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dldebug import Report
from dldebug.cli.app import main

FACTORIES = textwrap.dedent("""
    import torch
    from torch import nn
    from dldebug.demo.tiny_hf import tiny_bert_classifier, tiny_vit_classifier, token_batch

    def bert():
        return tiny_bert_classifier(num_labels=3)

    def vit():
        return tiny_vit_classifier()

    def bert_setup():
        model = bert().train()
        return model, token_batch(batch=16), None, torch.optim.AdamW(model.parameters(), lr=1e-3)

    def no_loss_setup():
        model = bert().train()
        return model, token_batch(batch=16, num_labels=None), None, torch.optim.AdamW(model.parameters())

    def huge_head():
        with torch.device("meta"):  # 822 million parameters, none allocated
            return nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(64 * 56 * 56, 4096), nn.ReLU(), nn.Linear(4096, 10))
""")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "hfmodels.py").write_text(FACTORIES)
    monkeypatch.chdir(tmp_path)
    from dldebug.demo.tiny_hf import token_batch

    batch = token_batch(batch=16)
    np.savez(tmp_path / "batch.npz", **{k: v.numpy() for k, v in batch.items()})
    np.savez(tmp_path / "inputs.npz", **{k: v.numpy() for k, v in batch.items() if k != "labels"})
    np.savez(tmp_path / "empty.npz")
    return tmp_path


def statuses(data: dict[str, Any]) -> dict[str, str]:
    return {c["check"]: c["status"] for c in data["checks"]}


def test_audit_a_bert_factory_with_an_npz_of_keyword_inputs(workdir: Path, capsys: Any) -> None:
    assert main(["audit", "hfmodels:bert", "--input", "inputs.npz", "--json", "--fail-on", "warning"]) == 0
    report = Report.from_json(capsys.readouterr().out)
    assert {c.check: c.status for c in report.checks} == {
        "forward.finite": "passed", "capacity": "passed", "equivariance": "skipped", "transfer": "passed",
        "overfit": "skipped"}
    assert report.get("transfer.head").evidence["suggested_cut"] == "bert.encoder.layer.1"


def test_audit_a_vit_factory_with_a_shape(workdir: Path, capsys: Any) -> None:
    assert main(["audit", "hfmodels:vit", "--input", "2x3x32x32", "--json", "--output", "logits"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert statuses(data)["equivariance"] == "passed"  # an inferred classifier: invariance is info only
    assert main(["audit", "hfmodels:vit", "--input", "2x3x32x32", "--output", "nothing"]) == 2
    assert "output='nothing' is not in the model's output" in capsys.readouterr().err


def test_audit_a_huge_head_built_on_meta_with_a_real_shaped_input(workdir: Path, capsys: Any) -> None:
    code = main(["audit", "hfmodels:huge_head", "--input", "1x3x56x56", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Tensor on device" not in captured.out + captured.err
    report = Report.from_json(captured.out)
    assert {c.check: c.status for c in report.checks} == {
        "forward.finite": "skipped", "capacity": "failed", "equivariance": "skipped", "transfer": "passed",
        "overfit": "skipped"}
    finding = report.get("capacity.dominant_layer")
    assert finding.evidence["input_map"] == "64x56x56" and finding.evidence["params"] == 64 * 56 * 56 * 4096 + 4096


def test_preflight_a_bert_setup_with_loss_fn_none(workdir: Path, capsys: Any) -> None:
    assert main(["preflight", "hfmodels:bert_setup", "--json", "--fail-on", "warning"]) == 0
    report = Report.from_json(capsys.readouterr().out)
    assert not report.findings
    assert not any(c.reason.startswith("could not run") for c in report.checks)


def test_preflight_a_bare_model_with_an_input_file(workdir: Path, capsys: Any) -> None:
    assert main(["preflight", "hfmodels:bert", "--input", "batch.npz", "--json", "--overfit-steps", "0"]) == 0
    report = Report.from_json(capsys.readouterr().out)
    assert report.meta["optimizer"] == "Adam (lr 0.001; the factory gave none)"
    assert {c.check: c.status for c in report.checks}["preflight.bad_targets"] == "passed"


@pytest.mark.parametrize(("args", "message"), [
    (["preflight", "hfmodels:bert"], "hfmodels:bert returned BertForSequenceClassification; expected (model, batch"),
    (["audit", "hfmodels:bert", "--input", "empty.npz"], "empty.npz: holds no array"),
    (["preflight", "hfmodels:no_loss_setup"], "preflight: loss_fn=None means the model computes its own loss, "
                                              "but its output is SequenceClassifierOutput"),
    (["audit", "hfmodels:bert", "--input", "missing.npz"], "missing.npz"),
])
def test_clean_errors(workdir: Path, capsys: Any, args: list[str], message: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
