"""feature_extractor and task_specific_layers: exact outputs, fewer FLOPs, helpful errors."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import fx, nn
from torch.utils.flop_counter import FlopCounterMode

from dldebug import InputError, LayerNotFoundError, feature_extractor, task_specific_layers
from dldebug.checks import suggested_cut, transfer_report
from dldebug.checks.transfer import HookedExtractor
from dldebug.demo.digits import DigitsCNN


def flops(module: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    return counter.get_total_flops()


class DataDependent(nn.Module):
    """``if h.sum() > 0`` cannot be traced by torch.fx: the extractor falls back to hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.mid, self.head, self.unused = nn.Linear(4, 32), nn.Linear(32, 32), nn.Linear(32, 3), \
            nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        if h.sum() > 0:
            h = -h
        return self.head(torch.relu(self.mid(h)))


@pytest.mark.parametrize(("layer", "manual"), [
    ("features", lambda m, x: m.features(x)),
    ("features.2", lambda m, x: m.features[:3](x)),
    ("classifier.1", lambda m, x: m.classifier[:2](m.features(x))),
])
def test_fx_extractor_returns_the_layer_output_with_fewer_flops(layer: str,
                                                                manual: Callable[..., torch.Tensor]) -> None:
    torch.manual_seed(0)
    model, x = DigitsCNN().eval(), torch.randn(5, 1, 8, 8)
    extractor = feature_extractor(model, layer)
    assert isinstance(extractor, fx.GraphModule)
    with torch.no_grad():
        assert torch.equal(extractor(x), manual(model, x))
    assert flops(extractor, x) < flops(model, x)


def test_hook_extractor_for_untraceable_models_stops_early() -> None:
    torch.manual_seed(0)
    model, x = DataDependent(), torch.randn(3, 4)
    extractor = feature_extractor(model, "mid")
    assert isinstance(extractor, HookedExtractor)
    with torch.no_grad():
        h = model.stem(x)
        expected = model.mid(-h if h.sum() > 0 else h)
        assert torch.equal(extractor(x), expected)
    assert flops(extractor, x) == flops(model, x) - 2 * 3 * 32 * 3  # the head's matmul never ran
    with pytest.raises(InputError, match="Layer 'unused' was not called during the model's forward pass"):
        feature_extractor(model, "unused")(x)


def test_extractor_shares_weights_with_the_model() -> None:
    model = DigitsCNN().eval()
    extractor = feature_extractor(model, "features.0")
    with torch.no_grad():
        model.features[0].bias.add_(1.0)
        assert torch.equal(extractor(torch.zeros(1, 1, 8, 8)), model.features[0](torch.zeros(1, 1, 8, 8)))


def test_unknown_layer_lists_the_closest_names() -> None:
    with pytest.raises(LayerNotFoundError) as info:
        feature_extractor(DigitsCNN(), "clasifier.1")
    assert str(info.value).startswith("DigitsCNN has no layer 'clasifier.1'. Closest names: ['classifier.1', ")
    assert isinstance(info.value, KeyError)


def vgg_like() -> nn.Module:
    model = nn.Module()
    model.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    model.classifier = nn.Sequential(nn.Linear(8 * 16, 64), nn.ReLU(), nn.Dropout(), nn.Linear(64, 64),
                                     nn.ReLU(), nn.Dropout(), nn.Linear(64, 10))
    return model


def resnet_like() -> nn.Module:
    model = nn.Module()
    model.conv1, model.bn1 = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)
    model.avgpool, model.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 10)
    return model


@pytest.mark.parametrize(("build", "heads", "cut"), [
    (DigitsCNN, ["classifier.3"], "classifier.1"),
    (vgg_like, ["classifier.3", "classifier.6"], "classifier.0"),
    (resnet_like, ["fc"], "avgpool"),
])
def test_task_specific_layers(build: Callable[[], nn.Module], heads: list[str], cut: str) -> None:
    model = build()
    assert task_specific_layers(model) == heads
    assert task_specific_layers(model, num_classes=10) == heads
    assert suggested_cut(model) == cut


def test_dense_model_output_conv_and_a_wrong_class_count() -> None:
    dense = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 2, 1))
    assert task_specific_layers(dense, num_classes=2) == ["4"]
    with pytest.raises(InputError, match=r"No Linear or convolution outputs num_classes=7; their output sizes "
                                         r"are \[2, 8\]"):
        task_specific_layers(dense, num_classes=7)


def test_transfer_report_roles() -> None:
    report = transfer_report(vgg_like(), num_classes=10)
    roles = {r["layer"]: r["role"] for r in report.table("transfer.layers").records()}
    assert roles["classifier.0"] == "suggested cut (kept)"
    assert roles["classifier.3"] == "task-specific" and roles["classifier.6"] == "output layer"
    finding = report.get("transfer.head")
    assert finding.lesson == 4 and finding.evidence == {
        "suggested_cut": "classifier.0", "task_specific": "classifier.3, classifier.6",
        "output_layer": "classifier.6", "output_size": 10}
