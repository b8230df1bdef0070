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


# -- real ports: MobileNetV2 through tf2onnx, BERT / GPT-2 through torch.onnx -------------------------------------


def _randomise_keras(model: Any, seed: int = 0) -> Any:
    """Trained-looking BatchNorm statistics and Dense biases, so no BatchNorm is an identity."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "BatchNormalization":
            shape = layer.get_weights()[0].shape
            layer.set_weights([rng.uniform(0.5, 1.5, shape).astype("f"), rng.normal(0, 0.2, shape).astype("f"),
                               rng.normal(0, 0.3, shape).astype("f"), rng.uniform(0.05, 2.0, shape).astype("f")])
        elif kind == "Dense":
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape).astype("f")])
    return model


@pytest.fixture(scope="session")
def mobilenet() -> Any:
    """``mobilenet("tf_keras" | "keras")``: MobileNetV2 (alpha 0.35, 96x96, weights=None), built once per library."""
    cache: dict[str, Any] = {}

    def build(library: str) -> Any:
        if library not in cache:
            keras = pytest.importorskip(library)
            keras.utils.set_random_seed(0)
            model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None)
            cache[library] = _randomise_keras(model)
        return cache[library]
    return build


@pytest.fixture(scope="session")
def to_onnx() -> Any:
    """``to_onnx(keras_model, nchw=False)``: the model converted by tf2onnx (``--inputs-as-nchw`` when nchw)."""
    tf2onnx = pytest.importorskip("tf2onnx")
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("onnxruntime")

    def convert(model: Any, nchw: bool = False) -> Any:
        spec = (tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32, name="input"),)
        nchw_inputs = ["input"] if nchw else None
        try:
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, inputs_as_nchw=nchw_inputs)
        except KeyError:  # tf2onnx 1.17 cannot read a Keras 3 Sequential's input names: trace a function
            function = tf.function(lambda x: model(x, training=False))
            proto, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=17,
                                                     inputs_as_nchw=nchw_inputs)
        return proto
    return convert


@pytest.fixture(scope="session")
def mobilenet_onnx(mobilenet: Any, to_onnx: Any) -> Any:
    """``mobilenet_onnx(library, nchw)``: the tf2onnx export of :func:`mobilenet`, converted once."""
    cache: dict[tuple[str, bool], Any] = {}

    def get(library: str, nchw: bool) -> Any:
        if (library, nchw) not in cache:
            cache[library, nchw] = to_onnx(mobilenet(library), nchw)
        return cache[library, nchw]
    return get


def _randomise_hf(model: nn.Module) -> nn.Module:
    """Non-zero biases and LayerNorm parameters (transformers initialises them to 0 and 1)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or ".ln_" in name:
                param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    return model


@pytest.fixture(scope="session")
def hf_models() -> dict[str, nn.Module]:
    """Tiny BERT classifier and GPT-2 LM (random weights, nothing downloaded)."""
    pytest.importorskip("transformers")
    from dldebug.demo.tiny_hf import tiny_bert_classifier, tiny_gpt2_lm

    gpt2 = tiny_gpt2_lm()
    gpt2.config.use_cache = False  # torch.export cannot trace the KV-cache object
    return {"bert": _randomise_hf(tiny_bert_classifier()), "gpt2": _randomise_hf(gpt2)}


@pytest.fixture(scope="session")
def tokens() -> dict[str, torch.Tensor]:
    from dldebug.demo.tiny_hf import token_batch

    return token_batch(batch=2, length=8, num_labels=None)


@pytest.fixture(scope="session")
def hf_onnx(hf_models: dict[str, nn.Module], tokens: dict[str, torch.Tensor]) -> Any:
    """``hf_onnx(name, exporter)``: the ONNX export (``"dynamo"`` or ``"torchscript"``), made once."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import io

    cache: dict[tuple[str, str], Any] = {}

    def get(name: str, exporter: str) -> Any:
        if (name, exporter) not in cache:
            model = hf_models[name]
            if exporter == "dynamo":
                cache[name, exporter] = torch.onnx.export(model, (), kwargs=dict(tokens), dynamo=True, optimize=True,
                                                          verbose=False).model_proto
            else:
                buffer = io.BytesIO()
                torch.onnx.export(model, (), buffer, kwargs=dict(tokens), dynamo=False,
                                  input_names=list(tokens))
                cache[name, exporter] = onnx.load_from_string(buffer.getvalue())
        return cache[name, exporter]
    return get


@pytest.fixture
def scale_row() -> Any:
    """``scale_row(proto, name, row, factor)``: plant a bug in an ONNX model, row ``row`` of initializer ``name``
    times ``factor`` (in place). A fixture: pytest's importlib mode cannot import conftest as a module."""
    return _scale_row


def _scale_row(proto: Any, name: str, row: int, factor: float) -> None:
    from onnx import numpy_helper

    tensor = next(t for t in proto.graph.initializer if t.name == name)
    array = numpy_helper.to_array(tensor).copy()
    array[row] *= factor
    tensor.CopyFrom(numpy_helper.from_array(array, name))
