"""Demo scenario: a Keras CNN hand-ported to PyTorch with PyTorch's default BatchNorm eps (lesson 10).

The Keras model is built with tf_keras defaults (BatchNormalization eps=1e-3,
LeakyReLU slope 0.3); the port copies every weight correctly but writes
``nn.BatchNorm2d(8)`` (eps=1e-5). ``compare_models`` names the BatchNorm as the
first divergent layer and the catalogue explains it; the fixed port matches.
The builders are reused by the tests.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from dldebug.errors import require
from dldebug.findings import Finding, Report, Severity, Table

__all__ = ["build_keras_cnn", "port_to_torch", "scenario"]

INPUT_SHAPE = (12, 12, 3)  # Keras (H, W, C)


def build_keras_cnn(keras: Any, seed: int = 0) -> Any:
    """A small CNN with Keras defaults: Conv-BN-LeakyReLU-Pool, Conv(relu)-Pool, Flatten, Dense, Dense.

    BatchNorm moving statistics are set to non-trivial values (as after training) so eps matters.
    """
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    model = keras.Sequential([
        keras.Input(INPUT_SHAPE),
        layers.Conv2D(8, 3, padding="same", name="conv1"),
        layers.BatchNormalization(name="bn1"),
        layers.LeakyReLU(name="act1"),
        layers.MaxPooling2D(2, name="pool1"),
        layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2"),
        layers.MaxPooling2D(2, name="pool2"),
        layers.Flatten(name="flatten"),
        layers.Dense(32, activation="relu", name="fc1"),
        layers.Dense(10, name="fc2"),
    ])
    rng = np.random.default_rng(seed)
    gamma, beta, _, _ = model.get_layer("bn1").get_weights()
    model.get_layer("bn1").set_weights([
        rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32), rng.normal(0, 0.2, beta.shape).astype(np.float32),
        rng.normal(0, 0.3, gamma.shape).astype(np.float32), rng.uniform(0.02, 0.2, gamma.shape).astype(np.float32)])
    return model


def port_to_torch(keras_model: Any, *, bn_eps: float = 1e-3, leaky_slope: float = 0.3,
                  permute_flatten: bool = True) -> nn.Sequential:
    """Hand-port :func:`build_keras_cnn` to PyTorch, copying every weight.

    Args:
        keras_model: the model from :func:`build_keras_cnn`.
        bn_eps: the port's BatchNorm eps (1e-5, PyTorch's default, is the bug).
        leaky_slope: the port's LeakyReLU slope (0.01, PyTorch's default, is the bug).
        permute_flatten: re-order fc1's inputs from Keras' HWC flatten to PyTorch's CHW (False is the bug).
    """
    h, w, _ = INPUT_SHAPE
    model: Any = nn.Sequential()
    model.add_module("conv1", nn.Conv2d(3, 8, 3, padding=1))
    model.add_module("bn1", nn.BatchNorm2d(8, eps=bn_eps))
    model.add_module("act1", nn.LeakyReLU(leaky_slope))
    model.add_module("pool1", nn.MaxPool2d(2))
    model.add_module("conv2", nn.Conv2d(8, 16, 3, padding=1))
    model.add_module("relu2", nn.ReLU())
    model.add_module("pool2", nn.MaxPool2d(2))
    model.add_module("flatten", nn.Flatten())
    model.add_module("fc1", nn.Linear(16 * (h // 4) * (w // 4), 32))
    model.add_module("relu3", nn.ReLU())
    model.add_module("fc2", nn.Linear(32, 10))
    get = keras_model.get_layer

    def put(param: torch.Tensor, value: np.ndarray) -> None:
        param.data = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))

    for name in ("conv1", "conv2"):
        kernel, bias = get(name).get_weights()
        conv: Any = getattr(model, name)
        put(conv.weight, kernel.transpose(3, 2, 0, 1))  # HWIO -> OIHW
        put(conv.bias, bias)
    gamma, beta, mean, var = get("bn1").get_weights()
    for param, value in zip((model.bn1.weight, model.bn1.bias, model.bn1.running_mean, model.bn1.running_var),
                            (gamma, beta, mean, var), strict=True):
        put(param, value)
    kernel, bias = get("fc1").get_weights()
    weight = kernel.T  # (out, in), in Keras' HWC order
    if permute_flatten:
        weight = weight.reshape(32, h // 4, w // 4, 16).transpose(0, 3, 1, 2).reshape(32, -1)
    put(model.fc1.weight, weight)
    put(model.fc1.bias, bias)
    kernel, bias = get("fc2").get_weights()
    put(model.fc2.weight, kernel.T)
    put(model.fc2.bias, bias)
    result: nn.Sequential = model.eval()
    return result


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence what TensorFlow's C++ runtime writes to file descriptor 2 while it is first imported.

    Its start-up lines (oneDNN, "no CUDA drivers") bypass Python and every log-level variable;
    Python exceptions still propagate as usual.
    """
    if "tensorflow" in sys.modules:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def scenario(ctx: Any) -> Report:
    """Compare the Keras CNN with its buggy port, then with the fixed port."""
    from dldebug.compare import compare_models

    start = time.perf_counter()
    with _quiet_native_stderr():
        keras = require("tf_keras", extra="keras", feature="the keras_port demo scenario")
        keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])  # the runtime logs once more on first use
    import_s = time.perf_counter() - start
    keras_model = build_keras_cnn(keras, seed=getattr(ctx, "seed", 0))
    buggy = compare_models(keras_model, port_to_torch(keras_model, bn_eps=1e-5))
    fixed = compare_models(keras_model, port_to_torch(keras_model, bn_eps=1e-3))
    first = buggy.first_divergence
    summary = Table("keras_port.runs", ("port", "first divergence (Keras)", "first divergence (PyTorch)",
                                        "max |a-b| there", "layers within tolerance"),
                    tuple((label, c.first_divergence.layer_a if c.first_divergence else "-",
                           c.first_divergence.layer_b if c.first_divergence else "-",
                           (c.first_divergence.metrics or {}).get("max_abs") if c.first_divergence else None,
                           f"{sum(r.within for r in c.rows)}/{len(c.rows)}")
                          for label, c in (("nn.BatchNorm2d(8) (eps=1e-5)", buggy),
                                           ("nn.BatchNorm2d(8, eps=1e-3)", fixed))),
                    caption="tf_keras CNN (a) vs its hand-port to PyTorch (b), all-ones input.")
    findings = list(buggy.report.own_findings)
    findings.append(Finding("compare.fixed", Severity.INFO if fixed else Severity.ERROR,
                            "after setting eps=1e-3 in the port, every layer matches" if fixed
                            else "the fixed port still diverges",
                            {"layers": len(fixed.rows), "diverged_layers": len(fixed.divergences)},
                            None, 10))
    elapsed = time.perf_counter() - start
    return Report(findings, title="Porting a Keras CNN to PyTorch: BatchNorm eps (lesson 10)",
                  tables=(summary, buggy.layers), figures=(buggy.figure(),),
                  meta={"first_divergence": first.layer_b if first else None, "seconds": round(elapsed, 2),
                        "tf_import_seconds": round(import_s, 2)})
