"""check_model, the check registry, dldebug.testing and the ``dldebug audit`` CLI."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

from dldebug import Report, check_model
from dldebug.checks import CHECKS, iter_checks, register_check
from dldebug.cli.app import main
from dldebug.findings import Finding
from dldebug.testing import (
    BoundCheck,
    assert_can_overfit,
    assert_equivariant,
    assert_invariant,
    parametrize_checks,
)


def statuses(report: Report) -> dict[str, str]:
    return {c.check: c.status for c in report.checks}


def test_healthy_dense_net_passes_and_skips_what_it_cannot_run(nets: Any, images: torch.Tensor) -> None:
    report = check_model(nets.circular_dense_net(), images)
    assert report.meta["task"] == "dense"  # inferred: the output keeps the input's spatial axes
    assert statuses(report) == {"forward.finite": "passed", "capacity": "passed", "equivariance": "passed",
                                "transfer": "passed", "overfit": "skipped"}
    assert report.get("transfer.head").evidence["task_specific"] == "4"  # the 1x1 output convolution
    assert {c.check: c.reason for c in report.checks}["overfit"] == "needs target and loss fn"
    assert Report.from_json(report.to_json()) == report


def test_each_check_fails_on_its_bug(nets: Any, images: torch.Tensor) -> None:
    pooled = check_model(nets.pooled_dense_net(), images)
    assert statuses(pooled)["equivariance"] == "failed" and pooled.has("equivariance.broken")
    classifier = check_model(nets.flatten_classifier(), images, task="classification")
    assert statuses(classifier)["equivariance"] == "failed" and classifier.has("invariance.broken")
    inferred = check_model(nets.flatten_classifier(), images)  # most CNN classifiers are not shift-invariant
    assert inferred.meta["task"] == "classification" and statuses(inferred)["equivariance"] == "passed"
    note = inferred.get("invariance.broken")
    assert note is not None and note.severity.value == "info" and "task inferred" in note.message
    nan_net = nn.Sequential(nn.Conv2d(1, 1, 1), nn.Threshold(0.0, float("nan")))
    assert statuses(check_model(nan_net, images))["forward.finite"] == "failed"


def test_overfit_check_runs_with_target_and_loss(nets: Any, images: torch.Tensor) -> None:
    y = torch.arange(len(images)) % 5
    healthy = check_model(nets.flatten_classifier(), images, target=y, loss_fn=nn.CrossEntropyLoss(),
                          tags=("training",))
    softmaxed = check_model(nn.Sequential(nets.flatten_classifier(), nn.Softmax(1)), images, target=y,
                            loss_fn=nn.CrossEntropyLoss(), tags=("training",))
    assert statuses(healthy) == {"overfit": "passed"}
    assert statuses(softmaxed) == {"overfit": "failed"} and softmaxed.has("capacity.cannot_overfit")


def test_meta_models_get_the_capacity_check_only() -> None:
    with torch.device("meta"):
        head = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.Flatten(), nn.Linear(64 * 100 * 100, 512))
    report = check_model(head, torch.empty(1, 64, 100, 100, device="meta"))
    assert statuses(report) == {"forward.finite": "skipped", "capacity": "failed", "equivariance": "skipped",
                                "transfer": "passed", "overfit": "skipped"}
    assert report.get("capacity.dominant_layer").evidence["input_map"] == "64x100x100"


def test_registry_accepts_user_checks(images: torch.Tensor) -> None:
    @register_check("demo.no_bias", tags=("custom",))
    def no_bias(ctx: Any) -> Report:
        """No layer has a bias (a toy user check)."""
        biased = [n for n, m in ctx.model.named_modules() if getattr(m, "bias", None) is not None]
        return Report([Finding("demo.no_bias", "warning", f"biases in {biased}")] if biased else [])

    try:
        assert [c.id for c in iter_checks(("custom",))] == ["demo.no_bias"]
        assert CHECKS["demo.no_bias"].description == "No layer has a bias (a toy user check)."
        report = check_model(nn.Conv2d(1, 1, 1), images, tags=("custom",))
        assert statuses(report) == {"demo.no_bias": "failed"}
        assert statuses(check_model(nn.Conv2d(1, 1, 1, bias=False), images, tags=("custom",))) == {
            "demo.no_bias": "passed"}
    finally:
        del CHECKS["demo.no_bias"]


def test_assert_helpers(nets: Any, images: torch.Tensor) -> None:
    assert_equivariant(nets.circular_dense_net(), images)
    with pytest.raises(AssertionError, match=r"Layer '4' \(MaxPool2d \(stride 2\)\) is the first to break "
                                             r"translate equivariance"):
        assert_equivariant(nets.pooled_dense_net(), images)
    assert_invariant(nets.gap_classifier(), images)
    with pytest.raises(AssertionError, match="Sequential is not invariant: The output is not invariant"):
        assert_invariant(nets.flatten_classifier(), images)
    y = torch.arange(len(images)) % 5
    assert assert_can_overfit(nets.flatten_classifier(), (images, y), nn.CrossEntropyLoss(), steps=100).passed
    with pytest.raises(AssertionError, match="cannot over-fit one batch"):
        assert_can_overfit(nn.Sequential(nets.flatten_classifier(), nn.Softmax(1)), (images, y),
                           nn.CrossEntropyLoss(), steps=50, lr=1e-2)


def test_bound_check_raises_and_skips(nets: Any, images: torch.Tensor) -> None:
    equivariance = BoundCheck(CHECKS["equivariance"], images, task="dense")
    equivariance(nets.circular_dense_net())
    with pytest.raises(AssertionError, match="check 'equivariance' failed for Sequential"):
        equivariance(nets.pooled_dense_net())
    with pytest.raises(pytest.skip.Exception, match="overfit: needs target and loss fn"):
        BoundCheck(CHECKS["overfit"], images)(nets.circular_dense_net())


_SUITE_INPUT = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
_SUITE_NET = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular"), nn.ReLU())


@parametrize_checks([_SUITE_NET], _SUITE_INPUT, task="dense", tags=("forward", "capacity", "geometry"))
def test_parametrized_suite(model: nn.Module, check: BoundCheck) -> None:
    check(model)


def test_parametrize_checks_ids() -> None:
    mark = parametrize_checks([_SUITE_NET], _SUITE_INPUT)
    assert mark.kwargs["ids"] == [f"Sequential-{c}" for c in ("forward.finite", "capacity", "equivariance",
                                                                  "transfer", "overfit")]


@pytest.fixture
def factory_module(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "h4models.py").write_text(
        "from torch import nn\n"
        "def pooled():\n"
        "    conv = lambda i, o: nn.Conv2d(i, o, 3, padding=1, padding_mode='circular')\n"
        "    return nn.Sequential(conv(1, 4), nn.ReLU(), nn.MaxPool2d(2), conv(4, 2))\n"
        "def flat_head():\n"
        "    return nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.Flatten(), nn.Linear(64 * 32 * 32, 64))\n")
    monkeypatch.chdir(tmp_path)


def test_cli_audit(factory_module: None, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["audit", "h4models:pooled", "--input", "2x1x16x16", "--task", "dense", "--json",
                 "--fail-on", "warning"])
    report = Report.from_json(capsys.readouterr().out)
    assert code == 1 and report.get("equivariance.broken").evidence["layer"] == "2"
    assert main(["audit", "h4models:flat_head", "--n-train", "500", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {c["check"]: c["status"] for c in data["checks"]}["capacity"] == "failed"
    assert main(["audit", "h4models:pooled", "--input", "2x3"]) == 2
    assert "failed on the example input Tensor of shape (2, 3) (float32): Padding size 4" in capsys.readouterr().err


def test_cli_audit_of_an_exported_program(tmp_path: Any, nets: Any, capsys: pytest.CaptureFixture[str]) -> None:
    model = nets.pooled_dense_net().eval()
    path = tmp_path / "pooled.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(2, 1, 16, 16),)), path)
    assert main(["audit", str(path), "--input", "2x1x16x16", "--json"]) == 0
    report = Report.from_json(capsys.readouterr().out)
    finding = report.get("equivariance.broken")  # torch.fx traces the exported graph: one row per aten op
    assert report.sections[2].meta["traced"] == "torch.fx"
    assert finding.evidence["layer"] == "max_pool2d_default"
    assert "pooling (max_pool2d.default() in forward())" in finding.message


def test_cli_audit_with_weights_and_an_input_file(factory_module: None, tmp_path: Any,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np
    from safetensors.torch import save_file

    from dldebug.io import load_factory

    model = load_factory("h4models:pooled")
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((2, 1, 16, 16)).astype(np.float32))
    assert main(["audit", "h4models:pooled", "--weights", "w.safetensors", "--input", "x.npy", "--json"]) == 0
    assert Report.from_json(capsys.readouterr().out).meta["task"] == "dense"
    save_file({"0.weight": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    assert main(["audit", "h4models:pooled", "--weights", "bad.safetensors"]) == 2
    assert "do not fit the model" in capsys.readouterr().err


def test_task_inference_needs_an_output_grid_at_a_resolution_of_the_input() -> None:
    from dldebug.checks.registry import _infer_task

    torch.manual_seed(0)
    x = torch.randn(2, 8, 32)
    same = nn.Conv1d(8, 4, 3, padding=1)  # (2, 4, 32): the input's axis
    halved = nn.Sequential(nn.Conv1d(8, 4, 3, padding=1), nn.MaxPool1d(2))  # (2, 4, 16)
    vocab = nn.Sequential(nn.Flatten(), nn.Linear(8 * 32, 6 * 100), nn.Unflatten(1, (6, 100)))  # (2, 6, 100)
    assert _infer_task(same, x, None) == _infer_task(halved, x, None) == "dense"
    assert _infer_task(vocab, x, None) == "classification"
