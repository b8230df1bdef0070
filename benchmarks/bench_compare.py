"""Benchmark: dldebug's layer-wise PyTorch-vs-ONNX comparison against Polygraphy's ONNX-Runtime all-outputs run.

Model: a ~50-layer CNN (16 Conv-BN-ReLU blocks + pool, flatten, linear), exported with the dynamo
exporter (optimize=False). Same model file, same input for every tool. Measured side by side in one
run, as CLI subprocesses (wall time including interpreter start-up and imports), median of N repeats:

* ``polygraphy run model.onnx --onnxrt --onnx-outputs mark all --load-inputs input.json``
  (Polygraphy's way to expose every tensor; ORT side only)
* ``dldebug compare bench_compare:build_cnn --weights-a w.pt model.onnx --input x.npy``
  (both sides: PyTorch hooks + ORT all-layer outputs + pairing + metrics + report)

and, in-process (imports excluded), ``compare_models`` vs a direct onnxruntime run with every node output
exposed.

Real ports (issue 15), in-process, imports and exports excluded: ``compare_models(a, onnx)`` (both runs +
matching + metrics) against Polygraphy's ``Comparator.run`` of the ONNX model with every output marked
(``ModifyOutputs(MARK_ALL)``, ORT side only, session creation included in both), on

* MobileNetV2 (tf_keras, alpha 0.35, 96x96, weights=None, BN statistics randomised) vs its tf2onnx export;
* tiny BERT (``dldebug.demo.tiny_hf``) vs its dynamo ONNX export, ``{"input_ids", "attention_mask"}`` int64.

Run: ``.venv/bin/python benchmarks/bench_compare.py [--repeats 5] [--ports-only]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent


def build_cnn() -> nn.Sequential:
    """16 Conv-BN-ReLU blocks (48 layers) + max-pools + flatten + linear: 53 modules."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    channels = 3
    for block in range(16):
        width = 16 if block < 8 else 32
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        if block in (3, 7, 11):
            layers.append(nn.MaxPool2d(2))
        channels = width
    layers += [nn.Flatten(), nn.Linear(32 * 4 * 4, 10)]
    model = nn.Sequential(*layers)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _timed(cmd: list[str], cwd: Path) -> tuple[float, int, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - start, proc.returncode, (proc.stdout + proc.stderr)[-400:]


def _prepare(folder: Path) -> np.ndarray:
    model = build_cnn()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.onnx.export(model, (x,), dynamo=True, optimize=False, verbose=False).save(str(folder / "model.onnx"))
    torch.save(model.state_dict(), folder / "w.pt")
    np.save(folder / "x.npy", x.numpy())
    shutil.copy(Path(__file__), folder / "bench_compare.py")
    import onnx

    input_name = onnx.load(str(folder / "model.onnx")).graph.input[0].name
    try:
        from polygraphy.json import save_json

        save_json([{input_name: x.numpy()}], str(folder / "input.json"))
    except ImportError:
        pass
    return x.numpy()


def _in_process(folder: Path, x: np.ndarray, repeats: int) -> dict[str, float]:
    import onnx
    import onnxruntime as ort

    from dldebug import compare_models

    proto = onnx.load(str(folder / "model.onnx"))
    model = build_cnn()

    def direct_ort() -> None:
        exposed = onnx.ModelProto()
        exposed.CopyFrom(proto)
        known = {o.name for o in exposed.graph.output}
        for node in exposed.graph.node:
            for name in node.output:
                if name and name not in known:
                    exposed.graph.output.append(onnx.ValueInfoProto(name=name))
        session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
        session.run(None, {proto.graph.input[0].name: x})

    def polygraphy_api() -> None:
        from polygraphy import constants
        from polygraphy.backend.onnx import BytesFromOnnx, ModifyOutputs, OnnxFromPath
        from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

        marked = ModifyOutputs(OnnxFromPath(str(folder / "model.onnx")), outputs=constants.MARK_ALL)
        loader = SessionFromOnnx(BytesFromOnnx(marked))
        with OnnxrtRunner(loader) as runner:
            runner.infer({proto.graph.input[0].name: x})

    candidates = [("onnxruntime all outputs (direct)", direct_ort),
                  ("dldebug compare_models", lambda: compare_models(model, proto, x))]
    try:
        import polygraphy  # noqa: F401

        candidates.append(("polygraphy API (OnnxrtRunner, mark all)", polygraphy_api))
    except ImportError:
        pass
    out: dict[str, float] = {}
    for label, fn in candidates:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        out[label] = statistics.median(times)
    result = compare_models(model, proto, x)
    out["layers paired"] = float(len(result.rows) - 1)
    out["all within tolerance"] = float(bool(result))
    return out


def _mobilenet() -> tuple[Any, Any, np.ndarray]:
    import tensorflow as tf
    import tf2onnx
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            shape = layer.get_weights()[0].shape
            layer.set_weights([rng.uniform(0.5, 1.5, shape).astype("f"), rng.normal(0, 0.2, shape).astype("f"),
                               rng.normal(0, 0.3, shape).astype("f"), rng.uniform(0.05, 2.0, shape).astype("f")])
    spec = (tf.TensorSpec((None, 96, 96, 3), tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    return model, proto, rng.uniform(0, 1, (1, 96, 96, 3)).astype(np.float32)


def _bert() -> tuple[Any, Any, dict[str, np.ndarray]]:
    from dldebug.demo.tiny_hf import tiny_bert_classifier, token_batch

    model = tiny_bert_classifier()
    tokens = token_batch(batch=2, length=8, num_labels=None)
    proto = torch.onnx.export(model, (), kwargs=dict(tokens), dynamo=True, optimize=True, verbose=False).model_proto
    return model, proto, {k: v.numpy() for k, v in tokens.items()}


def _median_seconds(fn: Any, repeats: int) -> tuple[float, float, float]:
    """``(median of the timed calls, first call, second call)``: the first call is the warm-up, outside the
    median; the first two are reported too (compare_models traces the Keras graph on a model's second call)."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), times[0], times[1]


def _ports(repeats: int) -> list[tuple[str, tuple[float, float, float], tuple[float, float, float], int, bool]]:
    """``(model, compare_models s, Comparator.run s, layers paired, all within)`` per real port; each time is
    ``(median, first call, second call)``."""
    from polygraphy import constants
    from polygraphy.backend.onnx import BytesFromOnnx, ModifyOutputs
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.comparator import Comparator

    from dldebug import compare_models

    out = []
    for label, build in (("MobileNetV2 tf_keras vs tf2onnx", _mobilenet), ("BERT tiny vs dynamo ONNX", _bert)):
        model, proto, x = build()
        feed = x if isinstance(x, dict) else {proto.graph.input[0].name: x}
        import onnx

        marked = onnx.ModelProto()
        marked.CopyFrom(proto)  # ModifyOutputs edits the model in place: Polygraphy gets its own copy
        loader = SessionFromOnnx(BytesFromOnnx(ModifyOutputs(marked, outputs=constants.MARK_ALL)))
        ours = _median_seconds(lambda m=model, p=proto, x=x: compare_models(m, p, x), repeats)
        theirs = _median_seconds(lambda loader=loader, feed=feed: Comparator.run([OnnxrtRunner(loader)],
                                                                               data_loader=[feed]), repeats)
        result = compare_models(model, proto, x)
        out.append((label, ours, theirs, len(result.rows) - 1, bool(result)))
    return out


def _print_ports(rows: list[tuple[str, tuple[float, float, float], tuple[float, float, float], int, bool]],
                 repeats: int) -> None:
    print(f"real ports, in-process, median of {repeats} (after one warm-up call)")
    print(f"{'model':<34} {'pairs':>5} {'ok':>3} {'compare_models s':>17} {'Comparator.run s':>17} {'ratio':>6}"
          f"   first two calls: compare_models / Comparator.run (s)")
    for label, ours, theirs, pairs, ok in rows:
        print(f"{label:<34} {pairs:5d} {'yes' if ok else 'NO':>3} {ours[0]:17.3f} {theirs[0]:17.3f} "
              f"{ours[0] / theirs[0]:6.2f}   {ours[1]:.3f}, {ours[2]:.3f} / {theirs[1]:.3f}, {theirs[2]:.3f}")


def _quiet_polygraphy() -> None:
    try:
        from polygraphy.logger import G_LOGGER

        G_LOGGER.module_severity = G_LOGGER.ERROR
    except ImportError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ports-only", action="store_true", help="only the real-port (issue 15) comparison")
    args = parser.parse_args()
    _quiet_polygraphy()
    ports = _ports(args.repeats)
    if args.ports_only:
        _print_ports(ports, args.repeats)
        return
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="bench_compare_") as tmp:
        folder = Path(tmp)
        x = _prepare(folder)
        commands = {"dldebug compare (CLI, both sides)": [
            str(bin_dir / "dldebug"), "compare", "bench_compare:build_cnn", "--weights-a", "w.pt", "model.onnx",
            "--input", "x.npy", "--json", "--fail-on", "error"]}
        polygraphy = shutil.which("polygraphy", path=str(bin_dir)) or shutil.which("polygraphy")
        if polygraphy and (folder / "input.json").exists():
            commands["polygraphy run --onnxrt --onnx-outputs mark all"] = [
                polygraphy, "run", "model.onnx", "--onnxrt", "--onnx-outputs", "mark", "all",
                "--load-inputs", "input.json"]
        commands["python -c 'import torch' (start-up share of dldebug)"] = [sys.executable, "-c", "import torch"]
        walls: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(args.repeats):  # interleaved, so background load hits both alike
            for label, cmd in commands.items():
                seconds, code, tail = _timed(cmd, folder)
                if code != 0:
                    raise SystemExit(f"{label} failed (exit {code}): {tail}")
                walls[label].append(seconds)
        inproc = _in_process(folder, x, args.repeats)
    print(f"model: 53-module CNN ({int(inproc['layers paired'])} layers paired), input 1x3x32x32, "
          f"all within tolerance: {bool(inproc['all within tolerance'])}; median of {args.repeats}")
    print(f"{'measurement (wall time)':<52} {'seconds':>8}")
    for label, values in walls.items():
        print(f"{label:<52} {statistics.median(values):8.3f}")
    for label in ("onnxruntime all outputs (direct)", "polygraphy API (OnnxrtRunner, mark all)",
                  "dldebug compare_models"):
        if label in inproc:
            print(f"{label + ' (in-process)':<52} {inproc[label]:8.3f}")
    if "polygraphy API (OnnxrtRunner, mark all)" in inproc:
        ratio = inproc["dldebug compare_models"] / inproc["polygraphy API (OnnxrtRunner, mark all)"]
        print(f"{'ratio compare_models / polygraphy API (in-process)':<52} {ratio:8.2f}")
    poly = "polygraphy run --onnxrt --onnx-outputs mark all"
    if poly in walls:
        ratio = statistics.median(walls["dldebug compare (CLI, both sides)"]) / statistics.median(walls[poly])
        print(f"{'ratio dldebug CLI / polygraphy (goal <= 1.0)':<52} {ratio:8.2f}")
    else:
        print("polygraphy not installed: compare against the direct onnxruntime run instead")
    ratio = inproc["dldebug compare_models"] / inproc["onnxruntime all outputs (direct)"]
    print(f"{'ratio compare_models / direct ORT (in-process)':<52} {ratio:8.2f}")
    print()
    _print_ports(ports, args.repeats)


if __name__ == "__main__":
    main()
