"""Fuzz targets for the model and tensor file loaders (``dldebug.io``, ``dldebug.compare.loading``).

Every generator writes a real file with the library that owns the format
(``np.save``, ``torch.save``, ``safetensors``, ``onnx``, ``torch.export.save``,
Keras ``model.save``) and keeps what it wrote. The oracle: a pristine file loads
back to exactly those values (a model to the same outputs); a pristine file that
dldebug must not load (object arrays, dtypes torch lacks, non-tensor state dicts)
is refused with a DldebugError; a damaged file either loads or is refused.
"""

from __future__ import annotations

import functools
import io
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fuzz_core import Target
from fuzz_mutations import FileCase, damaged, damages, file_cases, raw_file, zip_member_damage
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dldebug.errors import DldebugError, UnsafeFileError
from dldebug.io import OnnxModel, load_model, load_model_inputs, load_state_dict, load_tensor, load_tensors

_shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
_TORCH_KINDS = "biufc"  # numpy kinds with a torch dtype (longdouble excepted)


def _loadable(dtype: np.dtype) -> bool:
    return dtype.kind in _TORCH_KINDS and dtype.itemsize <= (16 if dtype.kind == "c" else 8)


_dtypes = st.one_of(hnp.boolean_dtypes(), hnp.integer_dtypes(endianness="?"),
                    hnp.unsigned_integer_dtypes(endianness="?"), hnp.floating_dtypes(endianness="?"),
                    hnp.complex_number_dtypes(endianness="?"), st.sampled_from([np.dtype(np.longdouble)]),
                    hnp.datetime64_dtypes(), hnp.byte_string_dtypes(max_len=3), hnp.unicode_string_dtypes(max_len=3),
                    st.just(np.dtype([("a", "<f4"), ("b", "<i2")])))
arrays = _dtypes.flatmap(lambda dtype: hnp.arrays(dtype, _shapes))


def _same(tensor: torch.Tensor, array: np.ndarray) -> None:
    assert tuple(tensor.shape) == array.shape, (tuple(tensor.shape), array.shape)
    np.testing.assert_array_equal(tensor.numpy(), array.astype(array.dtype.newbyteorder("=")))


# -- .npy / .npz -------------------------------------------------------------------------------------------
def _npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


@st.composite
def npy_files(draw: Any) -> tuple[bytes, Any]:
    """An array of any dtype and byte order (Fortran order too), or a header that lies about its shape."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        header = {"descr": draw(st.sampled_from(["<f8", "<i4", "|b1", ">f4"])), "fortran_order": draw(st.booleans()),
                  "shape": tuple(draw(st.lists(st.integers(0, 2**40), max_size=3)))}
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, header)
        return buffer.getvalue() + draw(st.binary(max_size=64)), None
    if choice == 1:
        return _npy_bytes(np.array([{"a": 1}, None], dtype=object), allow_pickle=True), "unsafe"
    array = draw(arrays)
    if array.ndim >= 2 and draw(st.booleans()):
        array = np.asfortranarray(array)
    return _npy_bytes(array), array


def _check_npy(case: FileCase, workdir: Path) -> None:
    path = case.write(workdir)
    expected = case.expected if case.pristine else None
    if isinstance(expected, np.ndarray) and not _loadable(expected.dtype):
        expected = "refuse"
    if isinstance(expected, str):
        _must_refuse(lambda: load_tensors(path), UnsafeFileError if expected == "unsafe" else DldebugError)
        return
    tensors = load_tensors(path)
    assert set(tensors) == {"x"}, tensors.keys()
    if expected is not None:
        _same(tensors["x"], expected)
    torch.testing.assert_close(load_tensor(path), tensors["x"], equal_nan=True, rtol=0, atol=0)


def _must_refuse(call: Any, kind: type[DldebugError]) -> None:
    try:
        call()
    except kind:
        return
    raise AssertionError(f"expected {kind.__name__}, but the file loaded")


_array_names = st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=6)


@st.composite
def npz_files(draw: Any) -> tuple[bytes, Any]:
    """``np.savez`` / ``np.savez_compressed`` of several named arrays."""
    named = draw(st.dictionaries(_array_names, arrays, max_size=3))
    buffer = io.BytesIO()
    (np.savez_compressed if draw(st.booleans()) else np.savez)(buffer, **named)
    return buffer.getvalue(), named


def _check_npz(case: FileCase, workdir: Path) -> None:
    path = case.write(workdir)
    expected = case.expected if case.pristine else None
    if expected is not None and not all(_loadable(a.dtype) for a in expected.values()):
        _must_refuse(lambda: load_tensors(path), DldebugError)
        return
    tensors = load_tensors(path)
    if expected is not None:
        assert set(tensors) == set(expected), (set(tensors), set(expected))
        for name, array in expected.items():
            _same(tensors[name], array)
    inputs = load_model_inputs(str(path))
    assert isinstance(inputs, (torch.Tensor, dict))
    for name in list(tensors)[:2]:
        torch.testing.assert_close(load_tensor(path, name), tensors[name], equal_nan=True, rtol=0, atol=0)


# -- .pt state dicts ---------------------------------------------------------------------------------------
_torch_dtypes = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64,
                                 torch.int8, torch.uint8, torch.bool, torch.complex64])


@st.composite
def tensors(draw: Any) -> torch.Tensor:
    shape = draw(_shapes)
    dtype = draw(_torch_dtypes)
    values = torch.from_numpy(draw(hnp.arrays(np.float64, shape, elements=st.floats(-1e4, 1e4))))
    tensor = values.to(dtype)
    if tensor.ndim == 2 and draw(st.booleans()):
        tensor = tensor.t()  # a non-contiguous view
    return tensor


_param_names = st.text(st.characters(codec="ascii", categories=("L", "N", "Pc", "Po")), min_size=1, max_size=12)


@st.composite
def state_dict_files(draw: Any) -> tuple[bytes, Any]:
    """``torch.save`` of a state dict (zip or legacy format), maybe wrapped in a checkpoint, or non-weights."""
    state = draw(st.dictionaries(_param_names, tensors(), min_size=1, max_size=4))
    kind = draw(st.sampled_from(["plain", "checkpoint", "lightning", "mixed"]))
    obj: Any = state
    if kind == "checkpoint":
        obj = {"epoch": draw(st.integers(0, 100)), "model_state_dict": state, "optimizer": {"lr": 0.1}}
    elif kind == "lightning":
        obj = {"state_dict": state, "global_step": 3, "hyper_parameters": {"n": [1, 2]}}
    elif kind == "mixed":
        obj = {**state, "not a tensor": draw(st.one_of(st.integers(), st.text(max_size=3), st.none()))}
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=draw(st.booleans()))
    return buffer.getvalue(), ("refuse" if kind == "mixed" else state)


@st.composite
def pt_cases(draw: Any) -> FileCase:
    content, expected = draw(state_dict_files())
    if content[:2] == b"PK" and draw(st.booleans()):
        data, edits = draw(zip_member_damage(content))
        return FileCase((("weights.pt", data),), "weights.pt", expected, edits)
    return draw(file_cases(st.just((content, expected)), st.sampled_from(["weights.pt", "w.pth", "model.bin"])))


def _check_pt(case: FileCase, workdir: Path) -> None:
    path = case.write(workdir)
    expected = case.expected if case.pristine else None
    if isinstance(expected, str):
        _must_refuse(lambda: load_state_dict(path), DldebugError)
        return
    state = load_state_dict(path)
    assert all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    if expected is not None:
        assert set(state) == set(expected)
        for name, tensor in expected.items():
            torch.testing.assert_close(state[name], tensor, rtol=0, atol=0, equal_nan=True)
    if path.suffix in (".pt", ".pth"):
        load_tensors(path)


# -- .safetensors ------------------------------------------------------------------------------------------
@st.composite
def safetensors_files(draw: Any) -> tuple[bytes, Any]:
    """A safetensors file, or one whose JSON header was edited (lengths, offsets, dtypes, shapes)."""
    from safetensors.torch import save

    state = {k: v.contiguous() for k, v in draw(st.dictionaries(_param_names, tensors(), max_size=3)).items()}
    data = save(state)
    if draw(st.booleans()):
        return data, state
    length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + length])
    edit = draw(st.sampled_from(["length", "offsets", "dtype", "shape", "metadata", "json"]))
    name = draw(st.sampled_from(sorted(header) or ["x"]))
    entry = header.get(name, {})
    if edit == "length":
        return struct.pack("<Q", draw(st.integers(0, 2**64 - 1))) + data[8:], None
    if edit == "offsets" and isinstance(entry, dict):
        entry["data_offsets"] = draw(st.lists(st.integers(-5, 2**63), min_size=0, max_size=3))
    elif edit == "dtype" and isinstance(entry, dict):
        entry["dtype"] = draw(st.sampled_from(["F8_E4M3", "U64", "BOOL", "C64", "X", "", "F4"]))
    elif edit == "shape" and isinstance(entry, dict):
        entry["shape"] = draw(st.lists(st.integers(-2, 2**40), max_size=4))
    elif edit == "metadata":
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=3), st.one_of(st.text(max_size=3),
                                                                                     st.integers())))
    text = json.dumps(header).encode() if edit != "json" else damaged(json.dumps(header).encode(),
                                                                         draw(st.lists(damages, min_size=1)))
    return struct.pack("<Q", len(text)) + text + data[8 + length:], None


def _check_safetensors(case: FileCase, workdir: Path) -> None:
    path = case.write(workdir)
    state = load_state_dict(path)
    expected = case.expected if case.pristine else None
    if expected is not None:
        assert set(state) == set(expected)
        for name, tensor in expected.items():
            torch.testing.assert_close(state[name], tensor, rtol=0, atol=0, equal_nan=True)


# -- .onnx -------------------------------------------------------------------------------------------------
_ONNX_OPS = ("Relu", "Sigmoid", "Neg", "Abs", "AddConst", "MatMul")


@st.composite
def onnx_files(draw: Any) -> tuple[bytes, Any]:
    """A chain of element-wise ops and a MatMul, with its numpy result on an all-ones input."""
    from onnx import TensorProto, helper, numpy_helper

    width = draw(st.integers(1, 4))
    ops = draw(st.lists(st.sampled_from(_ONNX_OPS), min_size=1, max_size=4))
    x = np.ones((1, width), dtype=np.float32)
    nodes, inits, current = [], [], "x"
    for i, op in enumerate(ops):
        out = f"t{i}"
        if op in ("AddConst", "MatMul"):
            values = draw(hnp.arrays(np.float32, (width, width) if op == "MatMul" else (width,),
                                     elements=st.floats(-4, 4, width=32)))
            inits.append(numpy_helper.from_array(values, f"c{i}"))
            nodes.append(helper.make_node("Add" if op == "AddConst" else "MatMul", [current, f"c{i}"], [out]))
            x = (x + values) if op == "AddConst" else (x @ values)
        else:
            nodes.append(helper.make_node(op, [current], [out]))
            x = {"Relu": lambda v: np.maximum(v, 0), "Sigmoid": lambda v: 1 / (1 + np.exp(-v)),
                 "Neg": np.negative, "Abs": np.abs}[op](x)
        current = out
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info(current, TensorProto.FLOAT, [1, width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString(), x.astype(np.float32)


def _check_onnx(case: FileCase, workdir: Path) -> None:
    path = case.write(workdir)
    model = load_model(path)
    assert isinstance(model, OnnxModel)
    session = model.session()
    expected = case.expected if case.pristine else None
    if expected is not None:
        (out,) = session.run(None, {"x": np.ones_like(expected)})
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


# -- .pt2 (torch.export) -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _exported() -> tuple[bytes, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).eval()
    x = torch.randn(1, 3)
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(model, (x,)), buffer)
    with torch.no_grad():
        return buffer.getvalue(), x, model(x)


@st.composite
def pt2_cases(draw: Any) -> FileCase:
    archive, _, expected = _exported()
    if draw(st.integers(0, 9)) == 0:
        return FileCase((("model.pt2", archive),), "model.pt2", expected)
    if draw(st.booleans()):
        data, edits = draw(zip_member_damage(archive))
    else:
        edits = tuple(draw(st.lists(damages, min_size=1, max_size=3)))
        data = damaged(archive, list(edits))
    return FileCase((("model.pt2", data),), "model.pt2", None, edits)


def _check_pt2(case: FileCase, workdir: Path) -> None:
    model = load_model(case.write(workdir))
    assert isinstance(model, torch.nn.Module)
    if case.pristine:
        _, x, expected = _exported()
        with torch.no_grad():
            torch.testing.assert_close(model(x), expected)


# -- Keras .keras / .h5 ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _keras_files() -> dict[str, tuple[bytes, np.ndarray]]:
    import os
    import tempfile

    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)])
    x = np.ones((1, 3), dtype=np.float32)
    expected = np.asarray(model(x))
    files = {}
    with tempfile.TemporaryDirectory() as folder:
        for suffix in (".keras", ".h5"):
            path = os.path.join(folder, "model" + suffix)
            model.save(path)
            files[suffix] = (Path(path).read_bytes(), expected)
    return files


@st.composite
def keras_cases(draw: Any) -> FileCase:
    suffix = draw(st.sampled_from([".keras", ".h5"]))
    content, expected = _keras_files()[suffix]
    name = "model" + suffix
    if draw(st.integers(0, 9)) == 0:
        return FileCase(((name, content),), name, expected)
    if suffix == ".keras" and draw(st.booleans()):
        data, edits = draw(zip_member_damage(content))
    else:
        edits = tuple(draw(st.lists(damages, min_size=1, max_size=3)))
        data = damaged(content, list(edits))
    return FileCase(((name, data),), name, None, edits)


def _check_keras(case: FileCase, workdir: Path) -> None:
    import keras

    from dldebug.compare.loading import load_compare_model

    try:
        model = load_compare_model(case.write(workdir))
        if case.pristine:
            np.testing.assert_allclose(np.asarray(model(np.ones((1, 3), dtype=np.float32))), case.expected,
                                       rtol=1e-6)
    finally:
        keras.backend.clear_session()  # Keras keeps every loaded model's graph state otherwise


FILE_TARGETS = (
    Target("load_tensors.npy", "dldebug.io", file_cases(npy_files(), "x.npy"), _check_npy, 9000, 240,
           from_bytes=raw_file("x.npy")),
    Target("load_tensors.npz", "dldebug.io", file_cases(npz_files(), "batch.npz"), _check_npz, 7000, 180,
           from_bytes=raw_file("batch.npz")),
    Target("load_state_dict.pt", "dldebug.io", pt_cases(), _check_pt, 7000, 180, from_bytes=raw_file("weights.pt")),
    Target("load_state_dict.safetensors", "dldebug.io", file_cases(safetensors_files(), "w.safetensors"),
           _check_safetensors, 7000, 180, from_bytes=raw_file("w.safetensors")),
    Target("load_model.onnx", "dldebug.io", file_cases(onnx_files(), "model.onnx"), _check_onnx, 5000, 120,
           from_bytes=raw_file("model.onnx")),
    Target("load_model.pt2", "dldebug.io", pt2_cases(), _check_pt2, 1500, 30, timeout_s=60,
           from_bytes=raw_file("model.pt2")),
    Target("load_compare_model.keras", "dldebug.compare.loading", keras_cases(), _check_keras, 800, 10,
           timeout_s=60),
)

__all__ = ["FILE_TARGETS", "arrays", "tensors"]
