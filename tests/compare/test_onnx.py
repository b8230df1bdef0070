"""PyTorch CNN vs its ONNX export (dynamo exporter), unoptimised and optimised (BatchNorm folded)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from dldebug import compare_models
from dldebug.errors import InputError
from dldebug.io import load_model

pytestmark = pytest.mark.onnx
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

X = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))  # the input `exported` used


def test_unoptimised_export_matches_layer_by_layer(exported: dict[str, Any]) -> None:
    result = compare_models(exported["model"], load_model(exported[False]), X)
    assert result, result.layers.records()
    assert [r.layer_a for r in result.rows][:-1] == [str(i) for i in range(12)]  # every module paired by name
    assert all(r.how == "name" for r in result.rows[:-1])
    bn = next(r for r in result.rows if r.layer_a == "1")
    assert bn.kind == "batchnorm" and bn.weights == "same"
    assert not result.unmatched_a and not result.unmatched_b


def test_optimised_export_with_folded_batchnorm_matches(exported: dict[str, Any]) -> None:
    proto = onnx.load(str(exported[True]))
    assert "BatchNormalization" not in {n.op_type for n in proto.graph.node}  # the optimiser folded it
    result = compare_models(exported["model"], proto, X)
    assert result, result.layers.records()
    folded = [r for r in result.rows if r.weights == "folded"]
    assert [(r.layer_a, r.kind) for r in folded] == [("0+1", "batchnorm/conv"), ("4+5", "batchnorm/conv")]
    reverse = compare_models(proto, exported["model"], X)
    assert reverse and [r.layer_b for r in reverse.rows if r.weights == "folded"] == ["0+1", "4+5"]


def test_shadow_mode_runs_onnx_nodes_individually(exported: dict[str, Any]) -> None:
    proto = onnx.load(str(exported[False]))
    result = compare_models(exported["model"], proto, X, mode="shadow")
    assert result and len(result.rows) == 13 and result.rows[-1].layer_a == "<output>"  # output: propagated
    assert {r.status for r in result.rows} == {"match"}


def test_corrupted_onnx_initializer_is_found(exported: dict[str, Any]) -> None:
    proto = onnx.load(str(exported[False]))
    init = next(i for i in proto.graph.initializer if i.name == "9.weight")
    array = onnx.numpy_helper.to_array(init).copy()
    array[0, 0] += 1.0
    init.CopyFrom(onnx.numpy_helper.from_array(array, init.name))
    for mode in ("propagate", "shadow"):
        result = compare_models(exported["model"], proto, X, mode=mode)  # type: ignore[arg-type]
        assert result.first_divergence is not None and result.first_divergence.layer_b == "9"
        assert result.first_divergence.weights == "differ"
    shadow = compare_models(exported["model"], proto, X, mode="shadow")
    assert [r.layer_a for r in shadow.divergences] == ["9"]


def test_input_shape_comes_from_the_onnx_model(exported: dict[str, Any]) -> None:
    result = compare_models(exported["model"], load_model(exported[False]), input_kind="random")
    assert result and result.settings["input_shape"] == [1, 3, 16, 16]


def test_wrong_input_shape_is_refused(exported: dict[str, Any]) -> None:
    with pytest.raises(InputError, match=r"has shape \[1, 3, 8, 8\]; model b \(onnx\) expects \[1, 3, 16, 16\] "
                                         r"\(channels_first, None = any size\), and no layout transpose fits"):
        compare_models(exported["model"], load_model(exported[False]), np.ones((1, 3, 8, 8), np.float32))


def test_onnx_file_path_is_accepted(exported: dict[str, Any]) -> None:
    path: Path = exported[False]
    assert compare_models(exported["model"], path, X)
    assert compare_models(exported["model"], str(path), X)


def test_exported_pt2_program_is_captured_per_module(exported: dict[str, Any]) -> None:
    graph_module = load_model(exported["pt2"])
    result = compare_models(exported["model"], graph_module, X)
    assert result and [r.layer_b for r in result.rows][:-1] == [str(i) for i in range(12)]
    bn = next(r for r in result.rows if r.layer_a == "1")
    assert bn.weights == "same" and bn.kind == "batchnorm"
    bad = load_model(exported["pt2"])
    with torch.no_grad():
        dict(bad.named_parameters())["4.weight"].view(-1)[3] += 0.5
    shadow = compare_models(exported["model"], bad, X, mode="shadow")
    assert [r.layer_b for r in shadow.divergences] == ["4"]


@pytest.mark.parametrize("fold", [False, True])
def test_legacy_exporter_is_paired_by_its_node_name_scopes(exported: dict[str, Any], fold: bool) -> None:
    import io

    buffer = io.BytesIO()
    mode = torch.onnx.TrainingMode.EVAL if fold else torch.onnx.TrainingMode.PRESERVE
    torch.onnx.export(exported["model"], (X,), buffer, dynamo=False, do_constant_folding=fold, training=mode)
    proto = onnx.load_from_string(buffer.getvalue())
    result = compare_models(exported["model"], proto, X)
    assert result and {r.how for r in result.rows[:-1]} == {"name"}  # "/0/Conv" is module "0"
    assert result.rows[0].layer_b == "0" and result.rows[0].layer_a == ("0+1" if fold else "0")
    assert sum(r.weights == "folded" for r in result.rows) == (2 if fold else 0)


class _SharedRelu(nn.Module):
    """A ResNet-style block: one ``self.relu`` module called twice, a residual add, a functional flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.relu = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()
        self.conv, self.bn, self.fc = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Linear(4 * 16 * 16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.stem(x))
        return self.fc(self.relu(self.bn(self.conv(x)) + x).flatten(1))


def test_module_called_twice_gives_two_layers() -> None:
    torch.manual_seed(0)
    model = _SharedRelu().eval()
    proto = torch.onnx.export(model, (X,), dynamo=True, optimize=False, verbose=False).model_proto
    result = compare_models(model, proto, X)
    assert result, result.layers.records()
    assert [r.layer_a for r in result.rows if r.kind == "relu"] == ["relu", "relu#2"]
    assert [r.layer_b for r in result.rows if r.kind == "relu"] == ["relu", "relu#2"]
    bad = copy.deepcopy(model)
    with torch.no_grad():
        bad.conv.bias += 0.2
    shadow = compare_models(model, bad, X, mode="shadow")
    assert [r.layer_a for r in shadow.divergences] == ["conv"]
