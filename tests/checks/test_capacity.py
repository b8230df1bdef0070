"""parameter_audit: lesson 3's C3D-like head (on the meta device) and its healthy twins."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from dldebug import InputError, parameter_audit
from dldebug.demo.digits import DigitsCNN

C, H, W, FC = 512, 128, 171, 1024  # the lesson's 512 x 128 x 171 map, fed to an FC layer


def c3d_like_head(*, bottleneck: bool = False, pooled: bool = False) -> nn.Sequential:
    with torch.device("meta"):  # billions of parameters, none allocated
        if pooled:
            return nn.Sequential(nn.Conv2d(C, C, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(C, FC), nn.ReLU(), nn.Linear(FC, 10))
        squeeze = [nn.Conv2d(C, 1, 1)] if bottleneck else []
        channels = 1 if bottleneck else C
        return nn.Sequential(nn.Conv2d(C, C, 3, padding=1), nn.ReLU(), *squeeze, nn.Flatten(),
                             nn.Linear(channels * H * W, FC), nn.ReLU(), nn.Linear(FC, 10))


META_INPUT = {"example_input": torch.empty(1, C, H, W, device="meta")}


@pytest.mark.parametrize("kwargs", [{}, META_INPUT], ids=["structure-only", "meta-forward"])
def test_c3d_like_head_is_flagged_with_analytic_counts(kwargs: dict[str, Any]) -> None:
    head = c3d_like_head()
    report = parameter_audit(head, **kwargs)
    finding = report.get("capacity.dominant_layer")
    assert finding is not None and finding.severity.value == "error" and finding.lesson == 3
    fc = C * H * W * FC + FC
    total = (C * C * 9 + C) + fc + (FC * 10 + 10)
    assert finding.evidence["layer"] == "3"
    assert finding.evidence["params"] == fc == 11_475_616_768
    assert finding.evidence["total_params"] == total == sum(p.numel() for p in head.parameters())
    assert finding.evidence["fix_params_bottleneck"] == (C + 1) + H * W * FC + FC
    assert finding.evidence["fix_params_global_pool"] == C * FC + FC
    assert finding.evidence["total_params_after_fix"] == total - fc + (C + 1) + H * W * FC + FC
    expected_map = "512x128x171" if kwargs else "512 x (21,888 positions)"
    assert finding.evidence["input_map"] == expected_map
    assert "nn.Conv2d(512, 1, 1)" in (finding.fix or "")


@pytest.mark.parametrize("twin", ["bottleneck", "pooled"])
def test_fixed_twins_stay_silent(twin: str) -> None:
    head = c3d_like_head(bottleneck=twin == "bottleneck", pooled=twin == "pooled")
    assert not parameter_audit(head).findings
    assert not parameter_audit(head, **META_INPUT).findings


def test_layer_table_matches_parameter_counts() -> None:
    model = DigitsCNN()
    report = parameter_audit(model, n_train_samples=1348, example_input=torch.randn(2, 1, 8, 8))
    assert not report.findings  # the healthy demo CNN: 38k parameters, 28 per sample
    records = report.table("capacity.layers").records()
    modules = dict(model.named_modules())
    assert {r["layer"]: r["params"] for r in records} == {
        name: sum(p.numel() for p in modules[name].parameters()) for name in
        ("features.0", "features.2", "classifier.1", "classifier.3")}
    assert sum(r["share"] for r in records) == pytest.approx(1.0)
    assert report.meta["params_per_sample"] == pytest.approx(38282 / 1348)


class FunctionalFlatten(nn.Module):
    """A real (allocated) model with a big FC fed by ``x.flatten(1)`` — no nn.Flatten to spot."""

    def __init__(self, pool: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1) if pool else nn.Identity()
        self.fc = nn.Linear(64 if pool else 64 * 32 * 32, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


def test_real_model_with_functional_flatten() -> None:
    x = torch.randn(1, 3, 32, 32)
    finding = parameter_audit(FunctionalFlatten(pool=False), example_input=x).get("capacity.dominant_layer")
    assert finding is not None and finding.severity.value == "warning"
    assert (finding.evidence["layer"], finding.evidence["input_map"]) == ("fc", "64x32x32")
    assert not parameter_audit(FunctionalFlatten(pool=True), example_input=x).findings


def test_params_per_sample_fires_only_on_tiny_data() -> None:
    model = FunctionalFlatten(pool=True)
    total = (3 * 9 + 1) * 64 + (64 + 1) * 32
    assert not parameter_audit(model, n_train_samples=100).has("capacity.params_per_sample")
    finding = parameter_audit(model, n_train_samples=2).get("capacity.params_per_sample")
    assert finding is not None and finding.evidence["params_per_sample"] == total / 2


def test_bad_sample_count() -> None:
    with pytest.raises(InputError, match=r"n_train_samples must be a positive integer \(the training set "
                                         r"size\); got 0\."):
        parameter_audit(DigitsCNN(), n_train_samples=0)


def vgg16_head() -> nn.Sequential:
    with torch.device("meta"):  # VGG16's classifier after a 7x7 adaptive pool: fc6 holds 102.8M parameters
        return nn.Sequential(nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d((7, 7)),
                             nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Linear(4096, 4096),
                             nn.ReLU(), nn.Linear(4096, 1000))


@pytest.mark.parametrize(("n_train", "severity"), [(None, "warning"), (1_281_167, None), (1_000, "error")])
def test_severity_follows_the_data_size(n_train: int | None, severity: str | None) -> None:
    report = parameter_audit(vgg16_head(), n_train_samples=n_train,
                             example_input=torch.empty(1, 512, 14, 14, device="meta"))
    finding = report.get("capacity.dominant_layer")
    assert (finding.severity.value if finding else None) == severity
    if finding is not None:
        assert (finding.evidence["layer"], finding.evidence["input_map"]) == ("4", "512x7x7")


def test_sequence_models_get_a_conv1d_fix() -> None:
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv1d(128, 128, 5, padding=2), nn.Flatten(), nn.Linear(128 * 4000, 256))
    for kwargs in ({}, {"example_input": torch.empty(1, 128, 4000, device="meta")}):
        finding = parameter_audit(model, **kwargs).get("capacity.dominant_layer")
        assert finding is not None and "nn.Conv1d(128, 1, 1)" in (finding.fix or "")


class TiedLM(nn.Module):
    """An embedding and an output projection sharing one weight, as language models do."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.body = nn.Linear(16, 16)
        self.head = nn.Linear(16, 50, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(self.embed(ids))))


def test_tied_parameters_are_counted_once() -> None:
    report = parameter_audit(TiedLM(), example_input=torch.zeros(2, 5, dtype=torch.long))
    records = {r["layer"]: r for r in report.table("capacity.layers").records()}
    assert report.meta["params"] == 50 * 16 + 16 * 16 + 16
    assert records["embed"]["params"] == 800 and records["head"]["params"] == 0
    assert records["head"]["note"] == "weight tied to embed.weight (counted there)"
    assert sum(r["share"] for r in records.values()) == pytest.approx(1.0)


class CpuConstant(nn.Module):
    """Builds a CPU tensor inside forward(): it runs on the CPU but cannot run on the meta device."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 56 * 56, 4096)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((self.conv(x) * torch.ones(1)).flatten(1))


def test_a_model_that_cannot_run_on_meta_is_audited_statically() -> None:
    with torch.device("meta"):
        model = CpuConstant()
    report = parameter_audit(model, example_input=torch.randn(1, 3, 56, 56))
    static = report.get("capacity.static_audit")
    assert static is not None and static.severity.value == "info"
    assert "Tensor on device cpu is not on the expected device meta" in static.evidence["reason"]
    finding = report.get("capacity.dominant_layer")  # the structure still names the huge FC head
    assert finding is not None and finding.evidence["layer"] == "fc"
    assert finding.evidence["params"] == 64 * 56 * 56 * 4096 + 4096
    assert finding.evidence["input_map"] == "64 x (3,136 positions)"


def test_a_real_model_failing_on_its_input_is_one_clear_error() -> None:
    with pytest.raises(InputError, match=r"parameter_audit: Sequential failed on the example input Tensor of shape "
                                         r"\(2, 5\) \(float32\): "):
        parameter_audit(nn.Sequential(nn.Linear(4, 2)), example_input=torch.randn(2, 5))
