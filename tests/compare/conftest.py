"""Shared builders for the compare tests: a small PyTorch CNN with trained-looking BatchNorm statistics."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn


def small_cnn(seed: int = 0) -> nn.Sequential:
    """Conv-BN-ReLU-Pool x2, GELU, AvgPool, Flatten, Linear-LeakyReLU-Linear; BN stats randomised."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.GELU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.LeakyReLU(), nn.Linear(32, 10))
    randomise_batchnorm(model)
    return model.eval()


def randomise_batchnorm(model: nn.Module) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0, 0.3)
                module.running_var.uniform_(0.05, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)


@pytest.fixture(scope="session")
def tf_keras() -> Any:
    """tf_keras, imported once per session (skips when the keras extra is missing)."""
    return pytest.importorskip("tf_keras")


@pytest.fixture(scope="session")
def keras3() -> Any:
    return pytest.importorskip("keras")


@pytest.fixture(scope="session")
def keras_cnn(tf_keras: Any) -> Any:
    from dldebug.demo.keras_port import build_keras_cnn

    return build_keras_cnn(tf_keras, seed=0)


@pytest.fixture(scope="session")
def make_cnn() -> Any:
    """The :func:`small_cnn` builder (conftest modules cannot be imported under importlib mode)."""
    return small_cnn


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[Any, Any]:
    """:func:`small_cnn` as the module, a ``.pt2`` archive and ONNX files (dynamo exporter, optimize False/True)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = small_cnn()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    folder = tmp_path_factory.mktemp("exported")
    out: dict[Any, Any] = {"model": model, "pt2": folder / "cnn.pt2"}
    torch.export.save(torch.export.export(model, (x,)), str(out["pt2"]))
    for optimize in (False, True):
        program = torch.onnx.export(model, (x,), dynamo=True, optimize=optimize, verbose=False)
        out[optimize] = folder / f"cnn_{optimize}.onnx"
        program.save(str(out[optimize]))
    return out
