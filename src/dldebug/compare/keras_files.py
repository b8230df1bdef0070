"""Read an untrusted Keras file's metadata safely before any Keras loader touches it.

Two dangers, both checked before ``keras.models.load_model`` runs:

* **Class injection.** A ``.keras`` archive's ``config.json`` (and an ``.h5`` file's
  ``model_config``) names the class of every object with a ``module`` key. Keras
  before 3.9 imported any module named there, even with ``safe_mode=True``
  (CVE-2025-1550: ``{"module": "subprocess", "class_name": "Popen"}`` ran a program).
  :func:`scan_config` refuses every module outside Keras itself, and Keras' known
  non-modelling functions (``keras.utils.get_file`` ...), whatever Keras is installed.
* **A damaged HDF5 file hangs** inside the HDF5 C library (not interruptible, not even
  by Ctrl-C). :func:`probe_hdf5` opens the file in a child process that reads every
  attribute and dataset, killed after a time limit; the parent never opens a file the
  child could not read.
"""

from __future__ import annotations

import builtins
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from dldebug.errors import FileFormatError, UnsafeFileError, require

__all__ = ["H5_PROBE_SECONDS", "LAMBDA_REFUSED", "keras_archive_facts", "probe_hdf5", "scan_config"]

LAMBDA_REFUSED = "refused to load: the Keras file holds Python code (a Lambda layer)"
H5_PROBE_SECONDS = 20.0  # base limit of the HDF5 probe; 1 s more per 100 MB of file
_CONFIG_LIMIT = 256 * 2**20  # a config.json larger than this is not a model description
_PACKAGES = ("keras", "tf_keras", "keras_hub", "keras_cv", "keras_nlp")  # the packages Keras itself resolves
# Keras' own list of non-modelling APIs (keras.src.saving.serialization_lib.NON_MODELING_APIS, 3.15) by name:
# a config naming one of them under any module is refused, also with a Keras that does not check it.
_NON_MODELLING = frozenset({
    "audio_dataset_from_directory", "clear_session", "deserialize_keras_object", "enable_unsafe_deserialization",
    "get_file", "image_dataset_from_directory", "load_img", "load_model", "load_weights", "model_from_json",
    "register_keras_serializable", "save_img", "save_model", "save_weights", "serialize_keras_object",
    "text_dataset_from_directory"})

# Runs in the child: open the file (or an archive member), read every attribute and every dataset (in
# slices, so memory stays small), print the two attributes the parent needs as JSON.
_PROBE = r"""
import json, sys, zipfile
import h5py

def text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ("" if value is None else str(value))

def read(obj):
    for key in obj.attrs:
        obj.attrs[key]
    if isinstance(obj, h5py.Dataset):
        if obj.ndim == 0 or obj.shape[0] == 0:
            obj[()]
        else:
            step = max(1, (64 << 20) // max(1, obj.dtype.itemsize * (obj.size // obj.shape[0])))
            for start in range(0, obj.shape[0], step):
                obj[start:start + step]

path, member = sys.argv[1], sys.argv[2]
source = zipfile.ZipFile(path).open(member) if member else path
with h5py.File(source, "r") as handle:
    read(handle)
    handle.visititems(lambda name, obj: read(obj))
    print(json.dumps({key: text(handle.attrs.get(key)) for key in ("keras_version", "model_config")}))
"""


def probe_hdf5(path: Path, member: str = "", *, seconds: float | None = None) -> dict[str, str]:
    """Read every attribute and dataset of an HDF5 file in a child process, with a time limit.

    Args:
        path: the ``.h5`` file, or the ``.keras`` archive holding ``member``.
        member: an HDF5 member of the zip archive ``path`` (``"model.weights.h5"``), or ``""``.
        seconds: the limit; default :data:`H5_PROBE_SECONDS` plus 1 s per 100 MB.

    Returns:
        The file's ``keras_version`` and ``model_config`` attributes as text ("" when the file has none).

    Raises:
        FileFormatError: the file is not readable HDF5, makes h5py crash, or hangs past the limit.
        MissingDependencyError: h5py is not installed.
    """
    require("h5py", extra="keras", feature="reading a Keras .h5 file")
    if seconds is None:
        seconds = H5_PROBE_SECONDS + path.stat().st_size / 100e6
    where = f"{member} in the archive" if member else "the HDF5 file"
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, str(path), member], capture_output=True, text=True,
                              timeout=seconds, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise FileFormatError(f"{where} could not be read within {seconds:.0f} s (h5py hangs on it): the file is "
                              "damaged. Save the model again (model.save('m.keras')).", path=path) from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1][:300]
        raise FileFormatError(f"{where} is not a readable HDF5 file ({last}). Is it a Keras .h5/.keras file saved "
                              "by model.save()?", path=path)
    try:
        facts = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise FileFormatError(f"{where} could not be probed (no answer from the reader).", path=path) from None
    return {key: str(facts.get(key, "")) for key in ("keras_version", "model_config")}


def keras_archive_facts(path: Path) -> dict[str, Any]:
    """The ``metadata.json`` of a ``.keras`` archive, after its config is scanned and its weights probed.

    Raises:
        FileFormatError: not a zip archive, no ``config.json``, config not JSON, weights unreadable.
        UnsafeFileError: the config names a class outside Keras (:func:`scan_config`).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise FileFormatError("cannot read the Keras model file: the archive has no config.json. Is it a "
                                      ".keras file saved by model.save()?", path=path)
            if archive.getinfo("config.json").file_size > _CONFIG_LIMIT:
                raise FileFormatError("cannot read the Keras model file: its config.json is over 256 MB.", path=path)
            config = archive.read("config.json")
            meta = archive.read("metadata.json") if "metadata.json" in names else b"{}"
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise FileFormatError(f"cannot read the Keras model file: not a readable zip archive "
                              f"({type(exc).__name__}: {exc}). Is it a .keras file saved by model.save()?",
                              path=path) from None
    scan_config(_json(config, "config.json", path), path)
    if "model.weights.h5" in names:
        probe_hdf5(path, "model.weights.h5")
    metadata = _json(meta, "metadata.json", path)
    return metadata if isinstance(metadata, dict) else {}


def _json(raw: bytes | str, what: str, path: Path) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise FileFormatError(f"cannot read the Keras model file: its {what} is not valid JSON "
                              f"({type(exc).__name__}).", path=path) from None


def scan_config(config: Any, path: Path) -> None:
    """Refuse a Keras model config naming code outside Keras: another module, a Python builtin, a Lambda.

    Every object Keras deserialises is a dict with ``class_name`` and an optional ``module``:
    the module must be Keras' own (``keras``, ``tf_keras`` ...; ``builtins`` only for a
    function reference, ``tensorflow`` only for a tensor spec), and the name must not be a
    non-modelling function (``get_file``, ``load_model`` ...) or a Python builtin.

    Raises:
        UnsafeFileError: the first offending object, with its module and class.

    Example:
        >>> scan_config({"module": "keras.layers", "class_name": "Dense", "config": {}}, Path("m.keras"))
        >>> scan_config({"module": "subprocess", "class_name": "Popen", "config": {}}, Path("m.keras"))
        Traceback (most recent call last):
        ...
        dldebug.errors.UnsafeFileError: m.keras: refused to load: the Keras config names 'subprocess.Popen', ...
    """
    stack = [config]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(value)
            continue
        if not isinstance(value, dict):
            continue
        stack.extend(value.values())
        if value.get("class_name") == "Lambda":
            raise UnsafeFileError(f"{LAMBDA_REFUSED}; nothing was loaded.", path=path)
        if "class_name" in value:
            reason = _unsafe(value)
            if reason:
                raise UnsafeFileError(f"refused to load: the Keras config names {reason}, which is not a Keras "
                                      "layer or function; loading it could run code from the file. Nothing was "
                                      "loaded. Save the model with Keras' own layers only.", path=path)


def _unsafe(obj: dict[str, Any]) -> str:
    """Why this config object is unsafe ("" when it is fine)."""
    module, class_name = obj.get("module"), obj.get("class_name")
    name = obj.get("config") if class_name == "function" else obj.get("spec_name", class_name)
    name = name if isinstance(name, str) else str(class_name)
    label = f"{module}.{name}" if module else name
    if not isinstance(module, (str, type(None))):
        return f"a module of type {type(module).__name__}"
    if name.split(">")[-1] in _NON_MODELLING:
        return f"{label!r} (a Keras function that reads or writes files)"
    if module is None:
        return ""
    package = module.split(".", 1)[0]
    if package in _PACKAGES:
        return ""
    if module == "builtins" and class_name == "function" and not hasattr(builtins, name):
        return ""  # Keras' own activations saved by name (resolved in keras.activations etc.)
    if package == "tensorflow" and class_name == "__typespec__":
        return ""
    return repr(label)
