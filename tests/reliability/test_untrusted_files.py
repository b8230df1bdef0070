"""Untrusted model files: each malicious file is refused with a clear error, nothing runs, nothing outside
the model's folder is read. Every payload is proved live: the library's unsafe loader does run it."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from malicious_files import (
    Malicious,
    huge_npy,
    huge_npz,
    huge_safetensors_header,
    huge_safetensors_shape,
    onnx_with_external_data,
    pickle_files,
    pt2_files,
)

from dldebug.cli.app import main
from dldebug.errors import DldebugError, FileFormatError, UnsafeFileError
from dldebug.io import OnnxModel, load_model, load_state_dict, load_tensors


def _assert_live(item: Malicious) -> None:
    """The oracle: the unsafe call runs the payload, so refusing it proved something."""
    assert not item.marker.exists()
    with contextlib.suppress(Exception):
        item.unsafe_load()
    assert item.marker.exists(), f"{item.name}: the payload should be live, otherwise this test proves nothing"


@pytest.fixture(scope="module")
def pickle_corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Malicious]:
    return {item.name: item for item in pickle_files(tmp_path_factory.mktemp("pickles"))}


_KINDS = ("top-level.pt", "in-state-dict.pt", "nested-checkpoint.ckpt", "legacy-format.pth", "raw-pickle.bin",
          "raw-pickle-protocol5.bin", "object-array.npy", "object-array.npz")
_PAYLOADS = ("exec", "eval", "os.system", "builtins.open")


@pytest.mark.parametrize("kind", _KINDS)
@pytest.mark.parametrize("payload", _PAYLOADS)
def test_pickle_payload_is_refused_and_never_runs(pickle_corpus: dict[str, Malicious], payload: str,
                                                  kind: str) -> None:
    item = pickle_corpus[f"{payload}-{kind}"]
    loader = load_tensors if item.path.suffix in (".npy", ".npz") else load_state_dict
    if kind == "raw-pickle-protocol5.bin":  # torch's unpickler stops at the protocol, before any object
        with pytest.raises(FileFormatError, match=r"corrupt or truncated torch file \(Unsupported operand 149\)"):
            loader(item.path)
    else:
        with pytest.raises(UnsafeFileError, match="refused") as info:
            loader(item.path)
        assert str(item.path) in str(info.value) and "never unpickles arbitrary objects" in str(info.value)
    if item.path.suffix in (".pt", ".pth"):
        with pytest.raises(UnsafeFileError):
            load_tensors(item.path)  # the --input / --calib path too
    assert not item.marker.exists(), "dldebug ran the payload"
    _assert_live(item)


def test_pickle_payload_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (item,) = [f for f in pickle_files(tmp_path) if f.name == "os.system-in-state-dict.pt"]
    (tmp_path / "untrusted_nets.py").write_text("import torch\n\ndef build():\n    return torch.nn.Linear(2, 2)\n")
    monkeypatch.chdir(tmp_path)
    for args in (["audit", "untrusted_nets:build", "--weights", str(item.path), "--input", "1x2"],
                 ["compress", "untrusted_nets:build", "--weights", str(item.path), "--rank", "1", "--input", "1x2",
                  "--out", str(tmp_path / "c.pt2")],
                 ["audit", "untrusted_nets:build", "--input", str(item.path)]):
        code = main(args)
        err = " ".join(capsys.readouterr().err.split())
        assert code == 2, err
        assert "refused" in err and "Traceback" not in err
    assert not item.marker.exists()
    _assert_live(item)


@pytest.mark.parametrize("name", ["sample-inputs.pt2", "pickled-weight.pt2", "opaque-object-constant.pt2"])
def test_pt2_archive_with_a_pickle_is_refused_although_torch_would_run_it(tmp_path: Path, name: str) -> None:
    (item,) = [f for f in pt2_files(tmp_path) if f.name == name]
    with pytest.raises(DldebugError, match="refused to load|cannot read the torch.export archive") as info:
        load_model(item.path)
    assert str(item.path) in str(info.value)
    assert not item.marker.exists(), "dldebug ran the payload"
    _assert_live(item)


# -- ONNX external data -------------------------------------------------------------------------------------
class _OpenRecorder:
    """Every path Python opens while recording (an audit hook: it sees ``open`` from any library's Python code)."""

    installed = False
    paths: list[str] | None = None

    @classmethod
    def hook(cls, event: str, args: tuple[object, ...]) -> None:
        if cls.paths is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            cls.paths.append(os.fsdecode(args[0]))

    @classmethod
    @contextlib.contextmanager
    def recording(cls):
        if not cls.installed:
            sys.addaudithook(cls.hook)
            cls.installed = True
        cls.paths = []
        try:
            yield cls.paths
        finally:
            cls.paths = None


@pytest.fixture
def model_folder(tmp_path: Path) -> tuple[Path, Path]:
    """``tmp/models/`` for the model and ``tmp/secret.bin`` outside it."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(2, dtype=np.float32).tobytes() * 4)
    return tmp_path / "models", secret


def _escapes(folder: Path, secret: Path) -> dict[str, str]:
    return {"dot-dot": "../secret.bin", "etc-passwd": "../../../../../../etc/passwd", "absolute": str(secret),
            "absolute-etc": "/etc/passwd", "symlink": "link.bin", "symlinked-folder": "linked/secret.bin"}


@pytest.mark.onnx
@pytest.mark.parametrize("escape", ["dot-dot", "etc-passwd", "absolute", "absolute-etc", "symlink",
                                    "symlinked-folder"])
def test_onnx_external_data_outside_the_folder_is_refused_unread(model_folder: tuple[Path, Path],
                                                                 escape: str) -> None:
    pytest.importorskip("onnx")
    folder, secret = model_folder
    folder.mkdir()
    (folder / "link.bin").symlink_to(secret)
    (folder / "linked").symlink_to(secret.parent, target_is_directory=True)
    path = onnx_with_external_data(folder / "model.onnx", _escapes(folder, secret)[escape])
    with _OpenRecorder.recording() as opened, pytest.raises(UnsafeFileError) as info:
        load_model(path)
    message = str(info.value)
    assert "refused to load: tensor 'w'" in message and ("outside the model's folder" in message
                                                         or "not a relative path" in message)
    outside = [p for p in opened if os.path.realpath(p) in (os.path.realpath(secret), "/etc/passwd")]
    assert not outside, f"read outside the model's folder: {outside}"


@pytest.mark.onnx
@pytest.mark.parametrize("location", ["weights.bin", "sub/../weights.bin"])
def test_onnx_external_data_inside_the_folder_loads_and_runs(tmp_path: Path, location: str) -> None:
    pytest.importorskip("onnxruntime")
    values = np.array([1.5, -2.0], dtype=np.float32)
    (tmp_path / "weights.bin").write_bytes(values.tobytes())
    (tmp_path / "sub").mkdir()
    model = load_model(onnx_with_external_data(tmp_path / "model.onnx", location))
    assert isinstance(model, OnnxModel)
    x = np.array([1.0, 2.0], dtype=np.float32)
    (y,) = model.session().run(None, {"x": x})
    np.testing.assert_array_equal(y, x + values)  # the oracle: numpy


@pytest.mark.onnx
def test_onnx_external_data_missing_or_too_short_is_a_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    path = onnx_with_external_data(tmp_path / "model.onnx", "absent.bin")
    with pytest.raises(FileFormatError, match="external data 'absent.bin' does not exist"):
        load_model(path)
    (tmp_path / "short.bin").write_bytes(b"\0" * 4)
    path = onnx_with_external_data(tmp_path / "model.onnx", "short.bin", length=8)
    with pytest.raises(FileFormatError, match=r"offset 0 \+ length 8 lies outside the 4-byte file"):
        load_model(path)


@pytest.mark.onnx
def test_onnx_escape_through_the_cli(model_folder: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnx")
    folder, _ = model_folder
    path = onnx_with_external_data(folder / "model.onnx", "../secret.bin")
    code = main(["compare", str(path), str(path), "--input", "ones"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "points outside the model's folder" in err and "Traceback" not in err


# -- oversized headers --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("build", "loader", "message"), [
    (huge_npy, load_tensors, r"header claims shape \(1000000, 1000000\) of float64 \(8,000,000,000,000 bytes\) "
                             r"but only 64 bytes follow it"),
    (huge_npz, load_tensors, r"array 'x''s header claims shape \(1000000, 1000000\)"),
    (huge_safetensors_header, load_state_dict, "not a valid safetensors file"),
    (huge_safetensors_shape, load_state_dict, "not a valid safetensors file"),
], ids=["npy", "npz", "safetensors-header-length", "safetensors-shape"])
def test_oversized_header_is_refused_before_allocating(tmp_path: Path, build, loader, message: str) -> None:
    suffix = {"huge_npy": ".npy", "huge_npz": ".npz"}.get(build.__name__, ".safetensors")
    path = build(tmp_path / f"huge{suffix}")
    start = time.perf_counter()
    with pytest.raises(FileFormatError, match=message):
        loader(path)
    assert time.perf_counter() - start < 5, "a refusal must not first try to allocate terabytes"


def test_array_larger_than_memory_is_refused_by_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dldebug.untrusted

    np.save(tmp_path / "x.npy", np.zeros((256, 1024), dtype=np.float32))  # 1 MiB, honest header
    monkeypatch.setattr(dldebug.untrusted, "memory_limit_bytes", lambda: 2**19)
    with pytest.raises(FileFormatError, match="would need 0.0 GiB, more than this machine's 0.0 GiB of memory"):
        load_tensors(tmp_path / "x.npy")
    monkeypatch.undo()
    assert load_tensors(tmp_path / "x.npy")["x"].shape == (256, 1024)  # the healthy case


# -- Keras ----------------------------------------------------------------------------------------------------
@pytest.mark.keras
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_lambda_layer_is_refused_and_never_runs(tmp_path: Path, suffix: str) -> None:
    keras = pytest.importorskip("keras")
    from dldebug.compare.loading import load_compare_model

    marker = str(tmp_path / "keras.marker")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(
        lambda x: (open(marker, "w").write("pwned"), x)[1]), keras.layers.Dense(2)])  # noqa: SIM115
    path = tmp_path / f"lambda{suffix}"
    model.save(path)
    os.remove(marker) if os.path.exists(marker) else None  # saving traces the lambda once
    with pytest.raises(UnsafeFileError, match="refused to load: the Keras file holds Python code"):
        load_compare_model(path)
    assert not os.path.exists(marker), "dldebug ran the Lambda's code"
    loaded = keras.models.load_model(path, compile=False, safe_mode=False)  # the oracle: live code
    loaded(np.ones((1, 3), dtype=np.float32))
    assert os.path.exists(marker)


@pytest.mark.keras
def test_keras_config_naming_a_non_keras_class_is_refused(tmp_path: Path) -> None:
    """CVE-2025-1550 style: config.json names ``subprocess.Popen`` as a layer; keras >= 3.9 refuses it."""
    import io
    import json
    import zipfile

    keras = pytest.importorskip("keras")
    from dldebug.compare.loading import load_compare_model

    marker = tmp_path / "popen.marker"
    base = tmp_path / "base.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(base)
    source = zipfile.ZipFile(base)
    config = json.loads(source.read("config.json"))
    config["config"]["layers"].insert(1, {"module": "subprocess", "class_name": "Popen",
                                          "config": {"args": ["touch", str(marker)]}, "registered_name": None})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info, json.dumps(config) if info.filename == "config.json" else source.read(info))
    evil = tmp_path / "popen.keras"
    evil.write_bytes(out.getvalue())
    with pytest.raises(FileFormatError):
        load_compare_model(evil)
    assert not marker.exists()


def test_healthy_files_still_load(tmp_path: Path) -> None:
    """The refusals above must not catch honest files: a state dict, a checkpoint, arrays of every numeric dtype."""
    state = {"w": torch.randn(3, 2), "b": torch.zeros(2, dtype=torch.bfloat16)}
    torch.save({"epoch": 3, "state_dict": state, "hparams": {"lr": 0.1}}, tmp_path / "ckpt.pt")
    loaded = load_state_dict(tmp_path / "ckpt.pt")
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    for dtype in ("<f4", ">f8", "<i2", "|u1", "|b1", "<c8", "<u4"):
        array = np.arange(6).reshape(2, 3).astype(dtype)
        np.save(tmp_path / "a.npy", array)
        tensor = load_tensors(tmp_path / "a.npy")["x"]
        np.testing.assert_array_equal(tensor.numpy(), array)
    np.save(tmp_path / "s.npy", np.float32(2.5))
    assert load_tensors(tmp_path / "s.npy")["x"].shape == ()  # a 0-d array stays 0-d
