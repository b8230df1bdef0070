"""Untrusted Keras files: a damaged .h5 that hangs h5py for ever (fuzzer C11) is refused after a time limit,
and a config naming a class outside Keras (N1, CVE-2025-1550) is refused before any Keras loader runs,
whatever Keras is installed. Healthy files of both libraries pass the same checks."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from dldebug.compare import keras_files, load_compare_model
from dldebug.compare.keras_files import keras_archive_facts, probe_hdf5, scan_config
from dldebug.errors import FileFormatError, UnsafeFileError

HANGING_H5 = Path(__file__).parent / "data" / "keras_hang.h5"  # a Dense model's .h5, bytes damaged by the fuzzer


def test_damaged_h5_that_hangs_h5py_is_refused_within_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("h5py")
    monkeypatch.setattr(keras_files, "H5_PROBE_SECONDS", 3.0)
    start = time.monotonic()
    with pytest.raises(FileFormatError) as info:
        load_compare_model(HANGING_H5)
    assert "the HDF5 file could not be read within 3 s (h5py hangs on it): the file is damaged" in str(info.value)
    assert time.monotonic() - start < 60  # the child is killed; nothing keeps running


def test_cli_on_the_hanging_h5_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("h5py")
    from dldebug.cli.app import main

    monkeypatch.setattr(keras_files, "H5_PROBE_SECONDS", 3.0)
    code = main(["compare", str(HANGING_H5), "other.onnx"])
    out = capsys.readouterr()
    assert code == 2 and "could not be read within 3 s" in out.err + out.out
    assert "Traceback" not in out.err + out.out


def test_file_that_is_not_hdf5_is_a_file_format_error(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    path = tmp_path / "model.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)  # the signature, then nothing
    with pytest.raises(FileFormatError, match="the HDF5 file is not a readable HDF5 file"):
        load_compare_model(path)


@pytest.mark.keras
def test_healthy_h5_and_keras_files_pass_the_probe(tmp_path: Path, tf_keras: Any, keras3: Any) -> None:
    for library, name in ((tf_keras, "tfk"), (keras3, "k3")):
        model = library.Sequential([library.Input((3,)), library.layers.Dense(4, activation="relu"),
                                    library.layers.Dense(2)])
        model.save(tmp_path / f"{name}.h5")
        model.save(tmp_path / f"{name}.keras")
        facts = probe_hdf5(tmp_path / f"{name}.h5")
        assert facts["keras_version"] == library.__version__ and '"Dense"' in facts["model_config"]
        assert keras_archive_facts(tmp_path / f"{name}.keras")["keras_version"] == library.__version__
        loaded = load_compare_model(tmp_path / f"{name}.h5")
        assert [w.shape for w in loaded.get_weights()] == [w.shape for w in model.get_weights()]


def _config(holder: Any) -> list[Any]:
    return [layer for layer in _walk(holder) if isinstance(layer, dict) and "class_name" in layer]


def _walk(value: Any) -> list[Any]:
    out = [value]
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    for child in children:
        out += _walk(child)
    return out


@pytest.mark.keras
@pytest.mark.parametrize("library", ["keras", "tf_keras"])
def test_configs_of_real_models_are_not_refused(library: str, mobilenet: Any, tmp_path: Path) -> None:
    """MobileNetV2 and a model with embeddings, norms, LSTM, regularisers, two inputs: every module is Keras'."""
    keras = pytest.importorskip(library)
    ids, mask = keras.Input((8,), dtype="int32", name="ids"), keras.Input((8,), name="mask")
    x = keras.layers.LayerNormalization()(keras.layers.Embedding(50, 16)(ids))
    x = keras.layers.Dense(16, activation="gelu", kernel_regularizer=keras.regularizers.L2(1e-3))(x)
    x = keras.layers.Multiply()([x, keras.layers.Reshape((8, 1))(mask)])
    x = keras.layers.Dense(2, activation="softmax")(keras.layers.LSTM(4)(x))
    for i, model in enumerate((mobilenet(library), keras.Model([ids, mask], x))):
        model.save(tmp_path / f"m{i}.keras")
        model.save(tmp_path / f"m{i}.h5")
        config = json.loads(zipfile.ZipFile(tmp_path / f"m{i}.keras").read("config.json"))
        assert {o.get("module") for o in _config(config)} - {None} <= {
            "keras", "keras.layers", "keras.initializers", "keras.regularizers", "keras.src.models.functional",
            "tf_keras.src.engine.functional"}  # what the scan lets through, seen in real files
        keras_archive_facts(tmp_path / f"m{i}.keras")
        scan_config(json.loads(probe_hdf5(tmp_path / f"m{i}.h5")["model_config"]), tmp_path / f"m{i}.h5")


_EVIL = {
    "subprocess.Popen": {"module": "subprocess", "class_name": "Popen", "config": {"args": ["touch", "MARKER"]},
                         "registered_name": None},
    "os.system": {"module": "os", "class_name": "function", "config": "system", "registered_name": None},
    "builtins.exec": {"module": "builtins", "class_name": "function", "config": "exec", "registered_name": None},
    "keras.utils.get_file": {"module": "keras.utils", "class_name": "function", "config": "get_file",
                             "registered_name": "get_file"},
    "Lambda": {"module": "keras.layers", "class_name": "Lambda", "config": {"function": "..."}},
}


def _evil_keras(base: Path, target: Path, evil: dict[str, Any], marker: Path) -> None:
    source = zipfile.ZipFile(base)
    config = json.loads(source.read("config.json"))
    config["config"]["layers"].insert(1, json.loads(json.dumps(evil).replace("MARKER", str(marker))))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for info in source.infolist():
            archive.writestr(info, json.dumps(config) if info.filename == "config.json" else source.read(info))
    target.write_bytes(out.getvalue())


@pytest.mark.keras
@pytest.mark.parametrize("name", list(_EVIL))
def test_class_injection_is_refused_before_keras_loads(name: str, keras3: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A Keras that would run the config (< 3.9) never gets it: load_model is never called."""
    calls: list[Any] = []
    monkeypatch.setattr(keras3.models, "load_model", lambda *a, **k: calls.append(a))
    marker = tmp_path / "ran.marker"
    base, evil = tmp_path / "base.keras", tmp_path / "evil.keras"
    keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(2)]).save(base)
    _evil_keras(base, evil, _EVIL[name], marker)
    with pytest.raises(UnsafeFileError, match="refused to load") as info:
        load_compare_model(evil)
    assert name.split(".")[-1] in str(info.value)
    assert not calls and not marker.exists()
    assert load_compare_model(base) is None and len(calls) == 1  # the healthy base reaches the (patched) loader


@pytest.mark.keras
def test_class_injection_in_an_h5_model_config_is_refused(tmp_path: Path, keras3: Any) -> None:
    import h5py

    path = tmp_path / "evil.h5"
    keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(2)]).save(path)
    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        config["config"]["layers"].append(_EVIL["subprocess.Popen"])
        handle.attrs["model_config"] = json.dumps(config)
    with pytest.raises(UnsafeFileError, match="the Keras config names 'subprocess.Popen'"):
        load_compare_model(path)


@pytest.mark.parametrize(("raw", "error", "text"), [
    (b"PK\x03\x04 truncated", FileFormatError, "not a readable zip archive"),
    ("zip:{}", FileFormatError, "the archive has no config.json"),
    ("zip:config.json=" + "[" * 100_000, FileFormatError, "its config.json is not valid JSON"),
])
def test_damaged_keras_archives_are_file_format_errors(raw: Any, error: type, text: str, tmp_path: Path) -> None:
    path = tmp_path / "m.keras"
    if isinstance(raw, bytes):
        path.write_bytes(raw)
    else:
        with zipfile.ZipFile(path, "w") as archive:
            if "=" in raw:
                archive.writestr("config.json", raw.split("=", 1)[1])
            archive.writestr("metadata.json", "{}")
    with pytest.raises(error, match=text):
        load_compare_model(path)
