"""Loaders: untrusted files are never unpickled; damaged files get one clear error."""

from __future__ import annotations

import contextlib
import io
import pathlib
import struct
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from dldebug.errors import FileFormatError, InputError, MissingDependencyError, UnsafeFileError
from dldebug.io import load_input, load_model, load_state_dict, load_tensor, load_tensors, parse_shape


class Payload:
    """Pickles to a call of exec() that writes a marker file: what an attacker's checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_malicious_pickle_state_dict_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.ones(2), "evil": Payload(marker)}, path)
    with pytest.raises(UnsafeFileError, match="refused to load: the file holds pickled Python objects beyond tensors"):
        load_state_dict(path)
    assert not marker.exists()
    with pytest.raises(UnsafeFileError):
        load_tensors(path)
    assert not marker.exists()


def _exported_archive(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(model, (torch.ones(1, 3),)), path)
    return model, path


def test_pt2_archive_loads_and_matches_eager(tmp_path):
    model, path = _exported_archive(tmp_path)
    loaded = load_model(path)
    x = torch.randn(1, 3)  # exported with a static batch of 1
    torch.testing.assert_close(loaded(x), model(x))


def test_malicious_pt2_archive_is_refused_although_torch_would_run_it(tmp_path):
    _, path = _exported_archive(tmp_path)
    marker = tmp_path / "pwned.txt"
    evil = io.BytesIO()
    torch.save(Payload(marker), evil)
    src = zipfile.ZipFile(path)
    bad = tmp_path / "evil.pt2"
    with zipfile.ZipFile(bad, "w") as out:
        replaced = 0
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("sample_inputs/model.pt"):
                data, replaced = evil.getvalue(), replaced + 1
            out.writestr(info, data)
    assert replaced == 1
    with pytest.raises(UnsafeFileError, match="refused to load"):
        load_model(bad)
    assert not marker.exists()
    # The oracle: plain torch.export.load falls back to weights_only=False and runs the payload.
    with contextlib.suppress(Exception):
        torch.export.load(bad)
    assert marker.exists(), "the payload should be live, otherwise this test proves nothing"


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        (b"", ".pt", "corrupt or truncated torch file"),
        (b"PK\x03\x04garbage", ".pt", "corrupt or truncated torch file"),
        (b"not safetensors at all", ".safetensors", "not a valid safetensors file"),
        (b"\x93NUMPY\x01\x00", ".npy", "corrupt or truncated numpy file"),
        (b"just text", ".pt2", r"not a torch.export archive \(not a zip file; truncated or corrupt\?\)"),
    ],
)
def test_corrupt_files_give_one_clear_error(tmp_path, content, suffix, message):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    loader = load_model if suffix == ".pt2" else (load_tensor if suffix == ".npy" else load_state_dict)
    with pytest.raises(FileFormatError, match=message) as info:
        loader(path)
    assert str(path) in str(info.value)


def test_damaged_pt2_archive(tmp_path):
    _, path = _exported_archive(tmp_path)
    data = bytearray(path.read_bytes())
    src = zipfile.ZipFile(path)
    # keep the zip directory but corrupt the graph JSON: a damaged, not a truncated, archive
    info = next(i for i in src.infolist() if i.filename.endswith("models/model.json"))
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    assert data[start:start + 1] == b"{"
    data[start:start + 20] = b"#" * 20
    path.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="cannot read the torch.export archive"):
        load_model(path)
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(FileFormatError, match="torch.export archive"):
        load_model(path)


def test_truncated_state_dict_is_named_corrupt(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(nn.Linear(64, 64).state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="corrupt or truncated torch file"):
        load_state_dict(path)


def test_missing_file_names_path(tmp_path):
    with pytest.raises(FileFormatError, match=r"missing\.pt2: Model file not found"):
        load_model(tmp_path / "missing.pt2")


def test_state_dict_round_trips_and_unwraps_checkpoints(tmp_path):
    sd = nn.Linear(3, 2).state_dict()
    torch.save({"epoch": 3, "state_dict": sd}, tmp_path / "ckpt.pt")
    loaded = load_state_dict(tmp_path / "ckpt.pt")
    assert set(loaded) == {"weight", "bias"}
    from safetensors.torch import save_file

    save_file(sd, str(tmp_path / "w.safetensors"))
    torch.testing.assert_close(load_state_dict(tmp_path / "w.safetensors")["weight"], sd["weight"])


def test_factory_spec_with_weights(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text(
        "import torch\n\ndef build():\n    return torch.nn.Linear(3, 2)\n"
    )
    monkeypatch.chdir(tmp_path)
    ref = nn.Linear(3, 2)
    torch.save(ref.state_dict(), tmp_path / "w.pt")
    model = load_model("mymodels:build", weights=tmp_path / "w.pt")
    torch.testing.assert_close(model.weight, ref.weight)
    with pytest.raises(InputError, match="Module 'mymodels' has no attribute 'nope'"):
        load_model("mymodels:nope")
    torch.save(nn.Linear(5, 2).state_dict(), tmp_path / "other.pt")
    with pytest.raises(InputError, match="do not fit the model"):
        load_model("mymodels:build", weights=tmp_path / "other.pt")
    with pytest.raises(InputError, match="holds weights only"):
        load_model(tmp_path / "w.pt")


def test_tensor_files(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    np.savez(tmp_path / "b.npz", x=np.ones(2), y=np.zeros(3))
    assert load_tensor(tmp_path / "a.npy").shape == (2, 3)
    assert load_input(f"{tmp_path / 'b.npz'}:y").shape == (3,)
    with pytest.raises(InputError, match=r"holds 2 arrays \['x', 'y'\]; choose one"):
        load_tensor(tmp_path / "b.npz")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UnsafeFileError, match="holds pickled objects"):
        load_tensor(tmp_path / "obj.npy")


def test_shapes():
    assert parse_shape("1x3x8x8") == (1, 3, 8, 8)
    assert load_input("2,3").shape == (2, 3)
    with pytest.raises(InputError, match="Cannot parse input shape 'axb'"):
        parse_shape("axb")


def test_missing_onnx_extra_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x07")
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # import onnx -> ImportError, as if absent
    with pytest.raises(MissingDependencyError, match=r"pip install 'dldebug\[onnx\]'"):
        load_model(path)


def test_load_model_inputs_keyword_arrays_keep_dtypes(tmp_path: pathlib.Path) -> None:
    from dldebug.io import load_model_inputs

    ids = np.arange(12, dtype=np.int64).reshape(2, 6)
    np.savez(tmp_path / "batch.npz", input_ids=ids, attention_mask=np.ones_like(ids))
    inputs = load_model_inputs(str(tmp_path / "batch.npz"))
    assert set(inputs) == {"input_ids", "attention_mask"} and inputs["input_ids"].dtype == torch.int64
    assert load_model_inputs(f"{tmp_path / 'batch.npz'}:input_ids").shape == (2, 6)
    np.save(tmp_path / "x.npy", np.zeros((1, 3), dtype=np.float32))
    assert load_model_inputs(str(tmp_path / "x.npy")).shape == (1, 3)
    assert load_model_inputs("1x2").shape == (1, 2)


# -- regressions found by the fuzzer (tests/reliability) ------------------------------------------------------
@pytest.mark.parametrize("array", [np.float32(2.5), np.arange(3, dtype=">f4"), np.arange(4, dtype=">i8").reshape(2, 2),
                                   np.asfortranarray(np.arange(6.0).reshape(2, 3)), np.zeros((0, 3), dtype="<u2")],
                         ids=["0-d", "big-endian-float", "big-endian-int", "fortran", "empty-uint16"])
def test_numpy_arrays_keep_shape_dtype_and_values(tmp_path, array):
    np.save(tmp_path / "a.npy", array)
    tensor = load_tensor(tmp_path / "a.npy")
    assert tuple(tensor.shape) == np.shape(array)  # a 0-d array used to come back as shape (1,)
    np.testing.assert_array_equal(tensor.numpy(), np.asarray(array).astype(np.asarray(array).dtype.newbyteorder("=")))


@pytest.mark.parametrize(("array", "kind"), [(np.array(["ab", "c"]), "text"), (np.array([b"x"]), "bytes"),
                                             (np.array(["2020-01-01"], dtype="datetime64[D]"), "dates"),
                                             (np.zeros(2, dtype=[("a", "<f4")]), "records"),
                                             (np.zeros(2, dtype=np.longdouble), "long double")])
def test_numpy_dtypes_torch_lacks_are_refused_by_name(tmp_path, array, kind):
    np.save(tmp_path / "a.npy", array)
    with pytest.raises(FileFormatError, match=rf"array 'x' has dtype .* \({kind}\), which torch cannot hold"):
        load_tensor(tmp_path / "a.npy")
    np.savez(tmp_path / "b.npz", ok=np.ones(2), bad=array)
    with pytest.raises(FileFormatError, match="array 'bad' has dtype"):
        load_tensors(tmp_path / "b.npz")


def test_npz_without_arrays_is_named(tmp_path):
    np.savez(tmp_path / "empty.npz")
    with pytest.raises(FileFormatError, match=r"empty\.npz: holds no array"):
        load_tensor(tmp_path / "empty.npz")


@pytest.mark.parametrize("content", [b"sUh\x05", b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.",
                                     b"\x80\x02}q\x00(X\x10\x00\x00\x00", b"\x80\x02h\x83."],
                         ids=["pop-from-empty-stack", "legacy-header-only", "truncated-dict", "memo-key-error"])
def test_damaged_pickles_of_any_exception_type_are_file_format_errors(tmp_path, content):
    path = tmp_path / "w.pt"
    path.write_bytes(content)
    with pytest.raises(FileFormatError, match="corrupt or truncated torch file") as info:
        load_state_dict(path)
    assert not isinstance(info.value, UnsafeFileError)


def test_unreadable_file_is_named_not_an_internal_error(tmp_path, monkeypatch):
    path = tmp_path / "w.pt"
    torch.save({"w": torch.ones(1)}, path)
    original = pathlib.Path.open

    def denied(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", denied)
    with pytest.raises(FileFormatError, match=r"w\.pt: Weights file cannot be read \(Permission denied\)"):
        load_state_dict(path)


def test_damaged_pt2_keeps_torch_tracebacks_off_the_terminal(tmp_path, capfd):
    _, path = _exported_archive(tmp_path)
    src = zipfile.ZipFile(path)
    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(bad, "w") as out:  # a valid zip whose archive version record is missing
        for info in src.infolist():
            if not info.filename.endswith(".data/version"):
                out.writestr(info, src.read(info.filename))
    capfd.readouterr()
    with pytest.raises(FileFormatError, match="cannot read the torch.export archive"):
        load_model(bad)
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out and "Ran into" not in captured.err
