"""Read an ONNX graph as layers: group nodes, name each group's kind, weights (PyTorch layout) and settings.

Nodes are grouped by the module scope the dynamo exporter stores in
``metadata_props`` (``pkg.torch.onnx.name_scopes``), else by the scope in the node
name that TorchScript (``/bert/encoder/layer.0/attention/self/query/MatMul``) and
tf2onnx (``model/block_1_depthwise/depthwise``) write. A group's kind comes from
its ops: ``Conv`` (grouped = depthwise), ``Gemm`` or ``MatMul`` + ``Add`` with a
constant weight (a Linear), ``Gather`` from a constant table (an Embedding), a
per-channel ``Mul``/``Add`` (a BatchNorm a converter decomposed), ``Clip(0, 6)``
(ReLU6), ``Erf``/``Tanh`` patterns (GELU), ``Sigmoid`` * x (SiLU), ``HardSwish``.
Constant sub-graphs (``Constant``, ``Identity``/``Transpose`` of an initializer)
are folded into constants and belong to no layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from dldebug.compare.records import KIND_OF_ONNX, Layout, call_name

__all__ = ["Group", "OnnxGraph"]

_SCOPES = "pkg.torch.onnx.name_scopes"
_CONST_OPS = frozenset({"Constant", "Identity", "Transpose", "Cast", "Reshape", "Unsqueeze", "Squeeze"})


@dataclass
class Group:
    """The nodes of one layer, in graph order; ``output`` is the last node's first output."""

    name: str
    nodes: list[Any] = field(default_factory=list)
    externals: list[str] = field(default_factory=list)

    @cached_property
    def output(self) -> str:
        return str(self.nodes[-1].output[0])  # read once the group is complete


def _metadata_scope(node: Any) -> str | None:
    for prop in node.metadata_props:
        if prop.key == _SCOPES:
            parts = [p for p in prop.value.strip("[]").replace("'", "").replace('"', "").split(", ")]
            modules = [p for p in parts[:-1] if p]
            return modules[-1] if modules else None
    return None


def _name_scope(node: Any) -> str | None:
    """``/a/b/Op`` (TorchScript) -> ``a.b``; ``model/layer/op`` (tf2onnx) -> ``layer``."""
    parts = str(node.name).split("/")
    if len(parts) < 3:
        return None
    return ".".join(p for p in parts[1:-1] if p) or None


def _attributes(node: Any) -> dict[str, Any]:
    import onnx

    out = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        out[a.name] = value.decode() if isinstance(value, bytes) else value
    return out


class OnnxGraph:
    """Groups, constants and per-group facts of one ONNX model."""

    def __init__(self, proto: Any) -> None:
        import onnx

        self.proto = proto
        graph = proto.graph
        self.constants: dict[str, np.ndarray] = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
        self.computed = [n for n in graph.node if not self._fold_constant(n)]
        self.groups = self._group()
        self.consumers: dict[str, list[Any]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def _fold_constant(self, node: Any) -> bool:
        """Evaluate a node whose inputs are all constants (a Constant, a Transpose of a weight ...)."""
        import onnx

        if node.op_type == "Constant":
            attr = next((a for a in node.attribute if a.name == "value"), None)
            if attr is None:
                return False
            self.constants[node.output[0]] = onnx.numpy_helper.to_array(attr.t)
            return True
        if node.op_type not in _CONST_OPS or not node.input or any(i not in self.constants for i in node.input if i):
            return False
        value = self.constants[node.input[0]]
        attrs = _attributes(node)
        if node.op_type == "Transpose":
            value = np.transpose(value, attrs.get("perm"))
        elif node.op_type == "Reshape":
            value = value.reshape(tuple(int(d) for d in self.constants[node.input[1]]))
        elif node.op_type in ("Unsqueeze", "Squeeze"):
            return False  # axes semantics differ by opset; rare on weights
        elif node.op_type == "Cast":
            import onnx.helper

            value = value.astype(onnx.helper.tensor_dtype_to_np_dtype(attrs["to"]))
        self.constants[node.output[0]] = np.asarray(value)
        return True

    def _group(self) -> list[Group]:
        groups: list[Group] = []
        scopes: list[str | None] = []
        for index, node in enumerate(self.computed):
            scope = _metadata_scope(node) or _name_scope(node)
            if groups and scope is not None and scopes[-1] == scope:
                groups[-1].nodes.append(node)
            else:
                groups.append(Group(scope or node.name or f"node_{index}", [node]))
                scopes.append(scope)
        seen: dict[str, int] = {}
        for g in groups:
            seen[g.name] = seen.get(g.name, 0) + 1
            g.name = call_name(g.name, seen[g.name])  # a module called twice gives two layers
            produced = {o for n in g.nodes for o in n.output}
            g.externals = list(dict.fromkeys(i for n in g.nodes for i in n.input
                                             if i and i not in produced and i not in self.constants))
        return groups

    # -- inputs and layout ------------------------------------------------------------------------
    def graph_inputs(self) -> list[Any]:
        return [i for i in self.proto.graph.input if i.name not in self.constants]

    def input_layout(self, value_info: Any) -> Layout:
        """channels_last when the input reaches its convolution through a Transpose to NCHW (tf2onnx)."""
        dims = [d.dim_value or None for d in value_info.type.tensor_type.shape.dim]
        for node in self.consumers.get(value_info.name, []):
            if node.op_type == "Transpose":
                perm = list(_attributes(node).get("perm", []))
                if perm in ([0, 3, 1, 2], [0, 2, 1], [0, 4, 1, 2, 3]):
                    return "channels_last"
            if node.op_type in ("Conv", "ConvTranspose"):
                return "channels_first"
        if len(dims) == 4 and dims[-1] in (1, 3, 4) and dims[1] not in (1, 3, 4):
            return "channels_last"
        return "channels_first"

    # -- what a group computes ----------------------------------------------------------------------
    def kind(self, group: Group, output: np.ndarray | None) -> tuple[str, Any]:
        """``(kind, main node)`` of a group (see the module docstring)."""
        ops = {n.op_type: n for n in group.nodes}
        for op, kind in (("Conv", "conv"), ("ConvTranspose", "conv_transpose"), ("Gemm", "dense"),
                         ("BatchNormalization", "batchnorm"), ("LayerNormalization", "layernorm"),
                         ("LSTM", "lstm"), ("GRU", "gru")):
            if op in ops:
                return kind, ops[op]
        matmul = next((n for n in group.nodes if n.op_type == "MatMul" and n.input[1] in self.constants), None)
        if matmul is not None:
            return "dense", matmul
        gather = ops.get("Gather")
        if gather is not None and gather.input[0] in self.constants \
                and self.constants[gather.input[0]].dtype.kind == "f":
            return "embedding", gather
        if self._is_affine(group):
            return "affine", group.nodes[0]
        activation = self._activation(group, ops)
        if activation is not None:
            return activation
        main = next((n for n in reversed(group.nodes) if n.op_type in KIND_OF_ONNX), group.nodes[-1])
        if main.op_type in ("Reshape", "Flatten") and output is not None and output.ndim == 2:
            return "flatten", main
        return KIND_OF_ONNX.get(main.op_type, "other"), main

    def _activation(self, group: Group, ops: dict[str, Any]) -> tuple[str, Any] | None:
        if "Erf" in ops:
            return "gelu", ops["Erf"]
        if "Gelu" in ops:
            return "gelu", ops["Gelu"]
        if "Tanh" in ops and "Pow" in ops:
            return "gelu", ops["Tanh"]
        if "HardSwish" in ops or ("HardSigmoid" in ops and "Mul" in ops):
            return "hardswish", ops.get("HardSwish", ops.get("HardSigmoid"))
        if "Sigmoid" in ops and "Mul" in ops:
            return "silu", ops["Sigmoid"]
        if "Clip" in ops:
            low, high = self.clip_range(ops["Clip"])
            kind = "relu6" if (low, high) == (0.0, 6.0) else "relu" if low == 0.0 and high == np.inf else "clip"
            return kind, ops["Clip"]
        return None

    def _is_affine(self, group: Group) -> bool:
        """Only per-channel Mul/Add by constants (a decomposed BatchNorm), at least one of them a Mul."""
        if not any(n.op_type == "Mul" for n in group.nodes):
            return False
        for node in group.nodes:
            if node.op_type not in ("Mul", "Add"):
                return False
            consts = [self.constants[i] for i in node.input if i in self.constants]
            if len(consts) != 1 or consts[0].size < 2 or consts[0].dtype.kind != "f":
                return False
        return len(group.externals) == 1

    def clip_range(self, node: Any) -> tuple[float, float]:
        attrs = _attributes(node)
        bounds = [float(self.constants[i].reshape(-1)[0]) if i in self.constants else None for i in node.input[1:3]]
        low = bounds[0] if bounds and bounds[0] is not None else float(attrs.get("min", -np.inf))
        high = bounds[1] if len(bounds) > 1 and bounds[1] is not None else float(attrs.get("max", np.inf))
        return low, high

    def params(self, kind: str, group: Group, node: Any) -> dict[str, np.ndarray]:
        """The group's weights in PyTorch's layout (conv OIHW, dense ``(out, in)``)."""
        arrays = [self.constants.get(name) for name in node.input]
        keys: tuple[str, ...] = ()
        if kind == "batchnorm":
            keys = ("", "weight", "bias", "running_mean", "running_var")
        elif kind in ("conv", "conv_transpose", "layernorm"):
            keys = ("", "weight", "bias")
        elif kind == "dense":
            return self._dense(group, node, arrays)
        elif kind == "embedding":
            return {"weight": np.asarray(arrays[0], np.float32)}
        elif kind == "affine":
            return self._affine(group)
        return {k: np.asarray(a, np.float32) for k, a in zip(keys, arrays, strict=False) if k and a is not None}

    def _dense(self, group: Group, node: Any, arrays: list[Any]) -> dict[str, np.ndarray]:
        weight, bias = arrays[1], arrays[2] if len(arrays) > 2 else None
        if weight is None:
            return {}
        if not (node.op_type == "Gemm" and _attributes(node).get("transB", 0)):
            weight = weight.T  # (in, out) -> PyTorch's (out, in)
        if bias is None:
            after = [n for n in group.nodes if n.op_type == "Add" and node.output[0] in n.input]
            bias = next((self.constants[i] for n in after for i in n.input if i in self.constants), None)
        out = {"weight": np.asarray(weight, np.float32)}
        if bias is not None and bias.size == weight.shape[0]:
            out["bias"] = np.asarray(bias, np.float32).reshape(-1)
        return out

    def _affine(self, group: Group) -> dict[str, np.ndarray]:
        scale: np.ndarray | None = None
        offset: np.ndarray | None = None
        for node in group.nodes:
            const = next(np.asarray(self.constants[i], np.float32).reshape(-1) for i in node.input
                         if i in self.constants)
            if node.op_type == "Mul":
                scale = const if scale is None else scale * const
                offset = None if offset is None else offset * const
            else:
                offset = const if offset is None else offset + const
        assert scale is not None
        return {"weight": scale, "bias": np.zeros_like(scale) if offset is None else offset}

    def config(self, kind: str, group: Group, node: Any) -> dict[str, Any]:
        attrs = _attributes(node)
        op = node.op_type
        if op == "BatchNormalization":
            # no momentum: an ONNX graph runs inference only (exporters leave the attribute out, and its
            # default would invent a training setting for a BatchNorm-momentum finding)
            return {"eps": float(attrs.get("epsilon", 1e-5))}
        if op == "LayerNormalization":
            return {"eps": float(attrs.get("epsilon", 1e-5))}
        if op == "LeakyRelu":
            return {"negative_slope": float(attrs.get("alpha", 0.01))}
        if kind == "gelu":
            tanh = op == "Tanh" or (op == "Gelu" and attrs.get("approximate", "none") == "tanh")
            return {"approximate": "tanh" if tanh else "none"}
        if op in ("Conv", "ConvTranspose"):
            return {"stride": tuple(attrs.get("strides", ())), "padding": tuple(attrs.get("pads", ())),
                    "auto_pad": str(attrs.get("auto_pad", "NOTSET")),
                    "kernel_size": tuple(attrs.get("kernel_shape", ())), "groups": int(attrs.get("group", 1))}
        if op == "AveragePool":
            return {"padding": tuple(attrs.get("pads", ())),
                    "count_include_pad": bool(attrs.get("count_include_pad", 0))}
        if op == "Resize":
            mode = str(attrs.get("coordinate_transformation_mode", "half_pixel"))
            return {"align_corners": mode == "align_corners", "coordinate_mode": mode}
        if kind in ("relu6", "clip"):
            low, high = self.clip_range(node)
            return {"min": low, "max": high}
        return {}
