"""A corpus of malicious model and tensor files, built by the tests (nothing is checked in).

Every code-execution payload creates a marker file when it runs; the tests prove
that dldebug refuses each file *and* that the payload is live (the library's
unsafe loader does run it), otherwise the refusal would prove nothing.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn


class Payload:
    """Pickles to a call that creates ``marker``: what an attacker's checkpoint does."""

    def __init__(self, kind: str, marker: Path) -> None:
        self.kind, self.marker = kind, str(marker)

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        code = f"open({self.marker!r}, 'w').write('pwned')"
        if self.kind == "exec":
            return exec, (code,)
        if self.kind == "eval":
            return eval, (code,)
        if self.kind == "os.system":
            return os.system, (f"touch {self.marker}",)
        if self.kind == "builtins.open":  # a builtin reached through __reduce__, no exec needed
            return builtins.open, (self.marker, "w")
        raise ValueError(self.kind)


PAYLOADS = ("exec", "eval", "os.system", "builtins.open")


@dataclass(frozen=True)
class Malicious:
    """One malicious file, the marker its payload creates, and the unsafe library call that runs it (the oracle)."""

    name: str
    path: Path
    marker: Path
    unsafe_load: Callable[[], object]


def _torch_unsafe(path: Path) -> Callable[[], object]:
    return lambda: torch.load(path, weights_only=False)


def pickle_files(folder: Path) -> list[Malicious]:
    """Pickle payloads as torch files: top level, nested in a state dict, legacy format, raw pickle, numpy."""
    files = []
    for kind in PAYLOADS:
        def payload(name: str, kind: str = kind) -> Payload:
            return Payload(kind, folder / f"{name}.marker")

        builders: dict[str, Callable[[Path], object]] = {
            f"{kind}-top-level.pt": lambda p: torch.save(payload(p.name), p),  # zip archive, payload in data.pkl
            f"{kind}-in-state-dict.pt": lambda p: torch.save({"weight": torch.ones(2), "evil": payload(p.name)}, p),
            f"{kind}-nested-checkpoint.ckpt": lambda p: torch.save(
                {"state_dict": {"layer.weight": torch.ones(1)}, "callbacks": [{"cb": payload(p.name)}]}, p),
            f"{kind}-legacy-format.pth": lambda p: torch.save({"w": torch.ones(1), "x": payload(p.name)}, p,
                                                              _use_new_zipfile_serialization=False),
            f"{kind}-raw-pickle.bin": lambda p: p.write_bytes(pickle.dumps({"w": payload(p.name)}, protocol=2)),
            f"{kind}-raw-pickle-protocol5.bin": lambda p: p.write_bytes(pickle.dumps({"w": payload(p.name)},
                                                                                     protocol=5)),
            f"{kind}-object-array.npy": lambda p: np.save(p, np.array([payload(p.name), 1], dtype=object),
                                                          allow_pickle=True),
            f"{kind}-object-array.npz": lambda p: np.savez(p, x=np.ones(2),
                                                           evil=np.array([payload(p.name)], dtype=object)),
        }
        for name, build in builders.items():
            path = folder / name
            build(path)
            files.append(Malicious(name, path, folder / f"{name}.marker", _unsafe_loader(path)))
    return files


def _unsafe_loader(path: Path) -> Callable[[], object]:
    if path.suffix == ".npy":
        return lambda: np.load(path, allow_pickle=True)
    if path.suffix == ".npz":
        return lambda: np.load(path, allow_pickle=True)["evil"]
    if path.suffix == ".bin":
        return lambda: pickle.loads(path.read_bytes())
    return lambda: torch.load(path, weights_only=False)


# -- .pt2 archives -----------------------------------------------------------------------------------------
def exported_archive() -> bytes:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(model, (torch.ones(1, 3),)), buffer)
    return buffer.getvalue()


def _rewrite(archive: bytes, replace: dict[str, bytes], add: dict[str, bytes] | None = None) -> bytes:
    source, out = zipfile.ZipFile(io.BytesIO(archive)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info, replace.get(info.filename, source.read(info.filename)))
        for name, data in (add or {}).items():
            target.writestr(name, data)
    return out.getvalue()


def pt2_files(folder: Path) -> list[Malicious]:
    """Every place a ``torch.export`` archive can hold a Python pickle: example inputs, a weight, an opaque constant.

    (``custom_obj_*`` constants go through TorchScript's own unpickler, which cannot call Python code.)
    """
    archive = exported_archive()
    weights_config = json.loads(zipfile.ZipFile(io.BytesIO(archive)).read(
        "archive/data/weights/model_weights_config.json"))
    first = next(iter(weights_config["config"].values()))
    first["use_pickle"] = True
    constant = {"path_name": "", "is_param": False, "use_pickle": True, "tensor_meta": None}

    def torch_payload(marker: Path) -> bytes:
        buffer = io.BytesIO()
        torch.save(Payload("exec", marker), buffer)
        return buffer.getvalue()

    def with_constant(prefix: str, marker: Path) -> bytes:
        config = {"config": {"evil": {**constant, "path_name": f"{prefix}0"}}}
        return _rewrite(archive, {"archive/data/constants/model_constants_config.json": json.dumps(config).encode()},
                        {f"archive/data/constants/{prefix}0": pickle.dumps(Payload("exec", marker))})

    variants: dict[str, Callable[[Path], bytes]] = {
        "sample-inputs.pt2": lambda m: _rewrite(archive, {"archive/data/sample_inputs/model.pt": torch_payload(m)}),
        "pickled-weight.pt2": lambda m: _rewrite(archive, {
            "archive/data/weights/model_weights_config.json": json.dumps(weights_config).encode(),
            "archive/data/weights/" + first["path_name"]: torch_payload(m)}),
        "opaque-object-constant.pt2": lambda m: with_constant("opaque_obj_", m),
    }
    files = []
    for name, build in variants.items():
        path, marker = folder / name, folder / f"{name}.marker"
        path.write_bytes(build(marker))
        files.append(Malicious(name, path, marker, lambda p=path: torch.export.load(p)))
    return files


# -- ONNX external data ------------------------------------------------------------------------------------
def onnx_with_external_data(path: Path, location: str, length: int = 8) -> Path:
    """An ``Add`` model whose constant operand lives in external data at ``location``."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.zeros(length // 4, dtype=np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [length // 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [length // 4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


# -- oversized headers -------------------------------------------------------------------------------------
def huge_npy(path: Path, shape: tuple[int, ...] = (10**6, 10**6)) -> Path:
    """A valid .npy header claiming ``shape`` of float64 (7 TiB) over 64 bytes of data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": shape})
    path.write_bytes(buffer.getvalue() + b"\0" * 64)
    return path


def huge_npz(path: Path) -> Path:
    """An .npz whose member header claims a 7 TiB array (the zip directory is honest: 64 data bytes)."""
    member = huge_npy(path.with_suffix(".member"))
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(member, "x.npy")
    member.unlink()
    return path


def huge_safetensors_header(path: Path) -> Path:
    """A safetensors file whose 8-byte header length claims 2**60 bytes of JSON."""
    path.write_bytes(struct.pack("<Q", 2**60) + b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' + b"\0" * 4)
    return path


def huge_safetensors_shape(path: Path) -> Path:
    """A safetensors header claiming a (2**40, 2**20) tensor over 4 data bytes."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [2**40, 2**20], "data_offsets": [0, 4]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    return path
