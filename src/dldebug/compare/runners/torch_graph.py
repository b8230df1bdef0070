"""PyTorch graph runner: a ``torch.export`` program (``.pt2``) run node by node with ``torch.fx.Interpreter``.

An exported module calls functional ops, not sub-modules, so hooks see nothing;
each node's ``nn_module_stack`` metadata names the module it came from, and the
nodes of one module form one layer (its output is the last node's). Settings are
read from the op arguments (``aten.batch_norm`` eps, ``leaky_relu`` slope ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dldebug.compare.inputs import ModelInputs
from dldebug.compare.records import KIND_OF_TORCH, Capture, InputSpec, LayerRecord, Layout, call_name

__all__ = ["TorchGraphRunner", "has_module_stack"]


def has_module_stack(model: Any) -> bool:
    graph = getattr(model, "graph", None)
    return isinstance(graph, torch.fx.Graph) and any(n.meta.get("nn_module_stack") for n in graph.nodes)


@dataclass
class _Layer:
    path: str
    type_name: str
    nodes: list[Any] = field(default_factory=list)
    name: str = ""


def _op_name(node: Any) -> str:
    return str(getattr(node.target, "__name__", node.target)).split(".")[0]


def _config(layer: _Layer) -> dict[str, Any]:
    for node in layer.nodes:
        op, args, kwargs = _op_name(node), node.args, node.kwargs
        if op in ("batch_norm", "_native_batch_norm_legit_no_training") and len(args) >= 7:
            return {"eps": float(args[-1]), "momentum": float(args[-2])} if op != "batch_norm" else \
                {"eps": float(args[7]), "momentum": float(args[6])}
        if op == "layer_norm":
            return {"eps": float(args[4]) if len(args) > 4 else 1e-5}
        if op == "leaky_relu":
            return {"negative_slope": float(args[1]) if len(args) > 1 else 0.01}
        if op == "gelu":
            return {"approximate": str(kwargs.get("approximate", "none"))}
    return {}


class TorchGraphRunner:
    """Captures every module-level layer of an exported ``GraphModule``."""

    framework = "torch"
    layout: Layout = "channels_first"

    def __init__(self, model: torch.fx.GraphModule) -> None:
        self.model = model
        self.layers = self._group(model.graph)
        self.state = {**dict(model.named_parameters()), **dict(model.named_buffers())}

    @staticmethod
    def _group(graph: torch.fx.Graph) -> list[_Layer]:
        layers: list[_Layer] = []
        for node in graph.nodes:
            stack = node.meta.get("nn_module_stack")
            if node.op != "call_function" or not stack:
                continue
            path, type_path = list(stack.values())[-1]
            type_name = str(getattr(type_path, "__name__", type_path)).split(".")[-1]
            if layers and layers[-1].path == path:
                layers[-1].nodes.append(node)
            else:
                layers.append(_Layer(str(path), type_name, [node]))
        calls: dict[str, int] = {}
        for layer in layers:
            calls[layer.path] = calls.get(layer.path, 0) + 1
            layer.name = call_name(layer.path, calls[layer.path])
        return layers

    def input_specs(self) -> list[InputSpec] | None:
        return None

    def _args(self, inputs: ModelInputs) -> list[torch.Tensor]:
        """The inputs in placeholder order (keyword inputs by placeholder name where they match)."""
        tensors = [torch.from_numpy(np.require(a, requirements="C")) for a in inputs.arrays]
        if inputs.style != "named":
            return tensors
        by_name = dict(zip(inputs.names, tensors, strict=True))
        names = [str(n.target) for n in self.model.graph.nodes if n.op == "placeholder"]
        return [by_name[n] for n in names if n in by_name] if set(by_name) <= set(names) else tensors

    def _run(self, x: ModelInputs, feeds: dict[str, list[np.ndarray]]) -> dict[Any, torch.Tensor]:
        first_nodes = {layer.nodes[0]: layer.name for layer in self.layers if layer.name in feeds}
        seen: dict[Any, torch.Tensor] = {}

        class Recorder(torch.fx.Interpreter):
            def run_node(self, node: Any) -> Any:
                if node in first_nodes:
                    args = list(node.args)
                    fed = torch.from_numpy(np.array(feeds[first_nodes[node]][0], copy=True))
                    original = self.env[args[0]]
                    self.env[args[0]] = fed.to(original.dtype)
                    try:
                        result = super().run_node(node)
                    finally:
                        self.env[args[0]] = original
                else:
                    result = super().run_node(node)
                if isinstance(result, torch.Tensor):
                    seen[node] = result.detach()
                    if node.args and isinstance(node.args[0], torch.fx.Node) and node.args[0] in self.env:
                        value = self.env[node.args[0]]
                        if isinstance(value, torch.Tensor):
                            seen[("in", node)] = value.detach()
                return result

        with torch.no_grad():
            out = Recorder(self.model).run(*self._args(x))
        seen["output"] = out[0] if isinstance(out, (tuple, list)) else out
        return seen

    def capture(self, x: ModelInputs) -> Capture:
        seen = self._run(x, {})
        records = []
        for layer in self.layers:
            output = seen.get(layer.nodes[-1])
            data_in = seen.get(("in", layer.nodes[0]))
            kind = KIND_OF_TORCH.get(layer.type_name, "other")
            prefix = layer.path + "."
            params = {k[len(prefix):]: v.detach().float().numpy() for k, v in self.state.items()
                      if k.startswith(prefix) and "." not in k[len(prefix):] and v.is_floating_point()}
            data = None if data_in is None else _array(data_in)
            rec = LayerRecord(layer.name, kind, layer.type_name, self.framework, "channels_first",
                              output=None if output is None else _array(output), input=data, params=params,
                              config=_config(layer), inputs=[] if data is None else [data])
            if kind == "flatten" and rec.input is not None:
                rec.flatten_from = tuple(rec.input.shape[1:])
            records.append(rec)
        return Capture(self.framework, "channels_first", records, _array(seen["output"]))

    def run_layers(self, x: ModelInputs, feeds: dict[str, list[np.ndarray]],
                   spans: dict[str, str] | None = None) -> dict[str, np.ndarray]:
        seen = self._run(x, feeds)
        return {layer.name: _array(seen[layer.nodes[-1]]) for layer in self.layers if layer.nodes[-1] in seen}


def _array(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach()
    return (tensor.float() if tensor.is_floating_point() else tensor).numpy()
