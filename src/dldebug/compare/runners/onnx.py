"""ONNX runner: onnxruntime with every layer's output exposed as a graph output (like Polygraphy).

Layers come from :class:`~dldebug.compare.runners.onnx_graph.OnnxGraph`. Every graph
input is fed by name with its declared dtype (int64 token ids stay int64); an image
input's layout is read from the graph (tf2onnx's default export takes NHWC and
transposes to NCHW before the first convolution; ``--inputs-as-nchw`` takes NCHW).
Shadow mode runs all fed layers in one extra session: each layer's nodes are copied
under a prefix, their data inputs become graph inputs. The model's analysis and its
sessions are kept per content (:mod:`~dldebug.compare.runners.onnx_cache`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dldebug.compare.inputs import ModelInputs
from dldebug.compare.records import Capture, InputSpec, LayerRecord, Layout
from dldebug.compare.runners.onnx_cache import analysed, session_for
from dldebug.compare.runners.onnx_graph import Group
from dldebug.errors import InputError, require

__all__ = ["OnnxRunner"]

def _value_info(name: str, array: np.ndarray) -> Any:
    import onnx

    dtype = onnx.helper.np_dtype_to_tensor_dtype(np.asarray(array).dtype)
    return onnx.helper.make_tensor_value_info(name, dtype, None)


class OnnxRunner:
    """Runs an ONNX model (path, ``onnx.ModelProto`` or :class:`dldebug.io.OnnxModel`) in onnxruntime."""

    framework = "onnx"

    def __init__(self, model: Any) -> None:
        onnx = require("onnx", extra="onnx", feature="comparing an ONNX model")
        self.ort = require("onnxruntime", extra="onnx", feature="comparing an ONNX model")
        if isinstance(model, (str, Path)):
            model = onnx.load(str(model))
        self.analysed = analysed(getattr(model, "proto", model))  # a private copy, analysed once per content
        self.proto = self.analysed.proto
        self.graph = self.analysed.graph
        self.groups = self.graph.groups
        inputs = self.graph.graph_inputs()
        if not inputs:
            raise InputError("the ONNX model has no inputs to feed.")
        self.specs = [InputSpec(i.name, tuple(d.dim_value or None for d in i.type.tensor_type.shape.dim),
                                str(onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)),
                                self.graph.input_layout(i)) for i in inputs]
        self.layout: Layout = next((s.layout for s in self.specs if s.shape is not None and len(s.shape) >= 4),
                                   "channels_first")

    def input_specs(self) -> list[InputSpec] | None:
        return list(self.specs)

    def _feed(self, x: ModelInputs) -> dict[str, np.ndarray]:
        return dict(zip([s.name for s in self.specs], x.arrays, strict=True))

    def _run_exposing(self, x: ModelInputs, names: list[str]) -> dict[str, np.ndarray]:
        session = self.analysed.exposing(self.ort, tuple(dict.fromkeys(names)), {s.name for s in self.specs})
        wanted = [o.name for o in session.get_outputs()]
        values = dict(zip(wanted, session.run(wanted, self._feed(x)), strict=True))
        values.update(self._feed(x))
        return values

    def capture(self, x: ModelInputs) -> Capture:
        names = [g.output for g in self.groups] + [n for g in self.groups for n in g.externals]
        values = self._run_exposing(x, names)
        records = [self._record(g, values) for g in self.groups]
        final = values[self.proto.graph.output[0].name]
        return Capture(self.framework, "channels_first", records, final)

    def _record(self, group: Group, values: dict[str, np.ndarray]) -> LayerRecord:
        output = values.get(group.output)
        inputs = [values[n] for n in group.externals if n in values]
        kind, main, params, config, digest = self.analysed.facts(group, output)
        rec = LayerRecord(group.name, kind, main.op_type, self.framework, "channels_first", output=output,
                          input=inputs[0] if inputs else None, params=params, config=config, inputs=inputs,
                          params_digest=digest)
        if kind == "flatten" and rec.input is not None:
            rec.flatten_from = tuple(rec.input.shape[1:])
        return rec

    def run_layers(self, x: ModelInputs, feeds: dict[str, list[np.ndarray]],
                   spans: dict[str, str] | None = None) -> dict[str, np.ndarray]:
        """Each fed layer's nodes run on their own, their data inputs replaced by ``feeds[name]``.

        ``spans[name] = last`` runs the layers from ``name`` through ``last`` (a fused activation after
        a conv, a BatchNorm folded on the other side) and returns ``last``'s output under ``last``.
        """
        index = {g.name: i for i, g in enumerate(self.groups)}
        chains = []
        for name in feeds:
            end = (spans or {}).get(name, name)
            if name in index and end in index and index[end] >= index[name]:
                chains.append((name, self.groups[index[name]:index[end] + 1]))
        chains = [(n, c) for n, c in chains if self._externals(c)]
        if not chains:
            return {}
        values = self._run_exposing(x, [e for _, chain in chains for e in self._externals(chain)])
        nodes, inputs, outputs, feed = [], [], [], {}
        for number, (name, chain) in enumerate(chains):
            prefix = f"shadow{number}/"
            given = feeds[name]
            for k, external in enumerate(self._externals(chain)):
                value = values[external]
                if k < len(given):
                    value = np.asarray(given[k]).astype(value.dtype, copy=False)
                feed[prefix + external] = np.require(value, requirements="C")
                inputs.append(_value_info(prefix + external, value))
            nodes += [self._renamed(node, prefix) for group in chain for node in group.nodes]
            outputs.append(onnx_value(prefix + chain[-1].output))
        results = session_for(self.ort, self._model(nodes, inputs, outputs)).run([o.name for o in outputs], feed)
        return {chain[-1].name: r for (_, chain), r in zip(chains, results, strict=True)}

    @staticmethod
    def _externals(chain: list[Group]) -> list[str]:
        produced: set[str] = set()
        names: list[str] = []
        for group in chain:
            names += [e for e in group.externals if e not in produced]
            produced.update(o for n in group.nodes for o in n.output)
        return list(dict.fromkeys(names))

    def _renamed(self, node: Any, prefix: str) -> Any:
        import onnx

        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = prefix + node.name
        for i, name in enumerate(copy.input):
            if name and name not in self.graph.constants:
                copy.input[i] = prefix + name
        for i, name in enumerate(copy.output):
            copy.output[i] = prefix + name
        return copy

    def _model(self, nodes: list[Any], inputs: list[Any], outputs: list[Any]) -> Any:
        import onnx

        used = {n for node in nodes for n in node.input}
        initializers = [i for i in self.proto.graph.initializer if i.name in used]
        have = {i.name for i in initializers}
        constants = [onnx.numpy_helper.from_array(np.asarray(v), name) for name, v in self.graph.constants.items()
                     if name in used and name not in have]
        graph = onnx.helper.make_graph(nodes, "shadow", inputs, outputs, initializers + constants)
        proto = onnx.helper.make_model(graph, opset_imports=self.proto.opset_import)
        proto.ir_version = self.proto.ir_version
        proto.functions.extend(self.proto.functions)  # dynamo exports may call local functions
        return proto


def onnx_value(name: str) -> Any:
    import onnx

    return onnx.ValueInfoProto(name=name)
