"""ONNX runner: onnxruntime with every layer's output exposed as a graph output (like Polygraphy).

Nodes are grouped into layers by the PyTorch module scope the dynamo exporter
stores in ``metadata_props`` (``pkg.torch.onnx.name_scopes``), so a layer of the
ONNX model carries the name of the module it came from; a model from another
exporter gets one layer per node, named by the node. Shadow mode runs each
fed layer's nodes as a small model of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dldebug.compare.records import KIND_OF_ONNX, PARAMETERISED, Capture, LayerRecord, Layout, call_name
from dldebug.errors import InputError, require

__all__ = ["OnnxRunner"]

_SCOPES = "pkg.torch.onnx.name_scopes"


@dataclass
class _Group:
    name: str
    nodes: list[Any] = field(default_factory=list)

    @property
    def output(self) -> str:
        return str(self.nodes[-1].output[0])


def _scope(node: Any) -> str | None:
    for prop in node.metadata_props:
        if prop.key == _SCOPES:
            parts = [p for p in prop.value.strip("[]").replace("'", "").replace('"', "").split(", ")]
            modules = [p for p in parts[:-1] if p]
            return modules[-1] if modules else None
    return None


def _typed(name: str, array: np.ndarray) -> Any:
    import onnx

    dtype = onnx.helper.np_dtype_to_tensor_dtype(np.asarray(array).dtype)
    return onnx.helper.make_tensor_value_info(name, dtype, np.asarray(array).shape)


def _attributes(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class OnnxRunner:
    """Runs an ONNX model (path, ``onnx.ModelProto`` or :class:`dldebug.io.OnnxModel`) in onnxruntime."""

    framework = "onnx"
    layout: Layout = "channels_first"

    def __init__(self, model: Any) -> None:
        onnx = require("onnx", extra="onnx", feature="comparing an ONNX model")
        self.ort = require("onnxruntime", extra="onnx", feature="comparing an ONNX model")
        if isinstance(model, (str, Path)):
            model = onnx.load(str(model))
        self.proto = getattr(model, "proto", model)
        graph = self.proto.graph
        self.initializers = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
        inputs = [i for i in graph.input if i.name not in self.initializers]
        if len(inputs) != 1:
            raise InputError(f"compare_models supports ONNX models with one input; this one has "
                             f"{[i.name for i in inputs]}.")
        self.input_name = inputs[0].name
        self.input_dims = tuple(d.dim_value or None for d in inputs[0].type.tensor_type.shape.dim)
        self.groups = self._group(graph)

    def _group(self, graph: Any) -> list[_Group]:
        groups: list[_Group] = []
        for index, node in enumerate(graph.node):
            scope = _scope(node)
            if groups and scope is not None and groups[-1].name == scope:
                groups[-1].nodes.append(node)
            else:
                groups.append(_Group(scope or node.name or f"node_{index}", [node]))
        groups = [g for g in groups if any(n.op_type != "Constant" for n in g.nodes)]
        seen: dict[str, int] = {}
        for g in groups:  # a trailing Constant is never the layer's output
            while g.nodes[-1].op_type == "Constant":
                g.nodes.pop()
            seen[g.name] = seen.get(g.name, 0) + 1
            g.name = call_name(g.name, seen[g.name])  # a module called twice gives two layers
        return groups

    def input_shape(self) -> tuple[int | None, ...] | None:
        return self.input_dims

    def _session(self, proto: Any) -> Any:
        options = self.ort.SessionOptions()
        options.log_severity_level = 3
        return self.ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def _run_exposing(self, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        import onnx

        proto = onnx.ModelProto()
        proto.CopyFrom(self.proto)
        existing = {o.name for o in proto.graph.output}
        for name in dict.fromkeys(names):
            if name not in existing:
                proto.graph.output.append(onnx.ValueInfoProto(name=name))
        session = self._session(proto)
        wanted = [o.name for o in session.get_outputs()]
        values = session.run(wanted, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})
        return dict(zip(wanted, values, strict=True))

    def _data_input(self, group: _Group) -> str | None:
        produced = {o for n in group.nodes for o in n.output}
        for node in group.nodes:
            for name in node.input:
                if name and name not in produced and name not in self.initializers:
                    return str(name)
        return None

    def capture(self, x: np.ndarray) -> Capture:
        names = [g.output for g in self.groups]
        inputs = {g.name: self._data_input(g) for g in self.groups}
        values = self._run_exposing(x, names + [n for n in inputs.values() if n])
        records = [self._record(g, values.get(g.output), values.get(inputs[g.name] or "")) for g in self.groups]
        final = values[self.proto.graph.output[0].name]
        return Capture(self.framework, "channels_first", records, final)

    def _record(self, group: _Group, output: np.ndarray | None, data_in: np.ndarray | None) -> LayerRecord:
        main = next((n for n in group.nodes if KIND_OF_ONNX.get(n.op_type) in PARAMETERISED), None)
        main = main or next((n for n in reversed(group.nodes) if n.op_type in KIND_OF_ONNX), group.nodes[-1])
        kind = KIND_OF_ONNX.get(main.op_type, "other")
        if main.op_type == "MatMul" and main.input[1] in self.initializers:
            kind = "dense"
        if main.op_type in ("Reshape", "Flatten") and output is not None and output.ndim == 2:
            kind = "flatten"
        rec = LayerRecord(group.name, kind, main.op_type, self.framework, "channels_first", output=output,
                          input=data_in, params=self._params(main), config=self._config(main))
        if kind == "flatten" and data_in is not None:
            rec.flatten_from = tuple(data_in.shape[1:])
        return rec

    def _params(self, node: Any) -> dict[str, np.ndarray]:
        arrays = [self.initializers.get(name) for name in node.input]
        attrs = _attributes(node)
        keys: tuple[str, ...]
        if node.op_type == "BatchNormalization":
            keys = ("", "weight", "bias", "running_mean", "running_var")
        elif node.op_type in ("Conv", "ConvTranspose", "LayerNormalization"):
            keys = ("", "weight", "bias")
        elif node.op_type in ("Gemm", "MatMul"):
            keys = ("", "weight", "bias")
            if arrays[1:2] and arrays[1] is not None and not (node.op_type == "Gemm" and attrs.get("transB", 0)):
                arrays[1] = arrays[1].T  # (in, out) -> PyTorch's (out, in)
        else:
            return {}
        return {k: np.asarray(a, np.float32) for k, a in zip(keys, arrays, strict=False) if k and a is not None}

    def _config(self, node: Any) -> dict[str, Any]:
        attrs = _attributes(node)
        op = node.op_type
        if op == "BatchNormalization":
            # ONNX momentum weights the running value, like Keras; convert to PyTorch's convention
            return {"eps": float(attrs.get("epsilon", 1e-5)), "momentum": 1.0 - float(attrs.get("momentum", 0.9))}
        if op == "LayerNormalization":
            return {"eps": float(attrs.get("epsilon", 1e-5))}
        if op == "LeakyRelu":
            return {"negative_slope": float(attrs.get("alpha", 0.01))}
        if op == "Gelu":
            value = attrs.get("approximate", b"none")
            return {"approximate": value.decode() if isinstance(value, bytes) else str(value)}
        if op in ("Conv", "ConvTranspose"):
            auto_pad = attrs.get("auto_pad", b"NOTSET")
            auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
            return {"stride": tuple(attrs.get("strides", ())), "padding": tuple(attrs.get("pads", ())),
                    "auto_pad": auto_pad, "kernel_size": tuple(attrs.get("kernel_shape", ()))}
        if op == "AveragePool":
            return {"padding": tuple(attrs.get("pads", ())),
                    "count_include_pad": bool(attrs.get("count_include_pad", 0))}
        if op == "Resize":
            mode = attrs.get("coordinate_transformation_mode", b"half_pixel")
            mode = mode.decode() if isinstance(mode, bytes) else str(mode)
            return {"align_corners": mode == "align_corners", "coordinate_mode": mode}
        return {}

    def run_layers(self, x: np.ndarray, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each fed layer's nodes run alone, its data input replaced by ``feeds[name]``."""
        import onnx

        groups = [g for g in self.groups if g.name in feeds]
        externals = {g.name: self._externals(g) for g in groups}
        values = self._run_exposing(x, [n for names in externals.values() for n in names])
        outputs: dict[str, np.ndarray] = {}
        for group in groups:
            data_input = self._data_input(group)
            names = externals[group.name]
            used = {n for node in group.nodes for n in node.input}
            graph = onnx.helper.make_graph(
                list(group.nodes), f"shadow_{group.name}",
                [_typed(n, feeds[group.name] if n == data_input else values[n]) for n in names],
                [onnx.ValueInfoProto(name=group.output)],
                [i for i in self.proto.graph.initializer if i.name in used])
            proto = onnx.helper.make_model(graph, opset_imports=self.proto.opset_import)
            proto.ir_version = self.proto.ir_version
            feed = {n: (feeds[group.name] if n == data_input else values[n]) for n in names}
            outputs[group.name] = self._session(proto).run([group.output], feed)[0]
        return outputs

    def _externals(self, group: _Group) -> list[str]:
        produced = {o for n in group.nodes for o in n.output}
        names = [n for node in group.nodes for n in node.input
                 if n and n not in produced and n not in self.initializers]
        return list(dict.fromkeys(names))
