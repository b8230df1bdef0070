"""Transfer learning: cut a model into a feature extractor, and name its task-specific layers (lesson 4).

The closer a layer is to the output, the more task-specific it is. The usual cut keeps the
convolutional stack plus the first fully connected layer (the lesson's ``fc_1``) and drops the rest.
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
from torch import fx, nn

from dldebug.checks.layers import CONVOLUTIONS, POOLING, SEQUENCE, layer_kind, leaf_modules
from dldebug.errors import InputError, LayerNotFoundError
from dldebug.findings import Finding, Report, Severity, Table
from dldebug.model_io import OutputSpec, select_output
from dldebug.weights import is_linear_like, linear_shape

__all__ = ["feature_extractor", "suggested_cut", "task_specific_layers", "transfer_report"]

_SPATIAL = (*CONVOLUTIONS, *POOLING, *SEQUENCE, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class _EarlyExit(Exception):  # control flow, not an error
    def __init__(self, output: Any) -> None:
        super().__init__("feature extractor reached its layer")
        self.output = output


class HookedExtractor(nn.Module):
    """Runs the model until ``layer`` has produced its output, then stops (models fx cannot trace).

    The forward hook raises a private exception that unwinds the rest of the model's forward, so
    no computation after the layer runs. A layer the forward pass calls several times (ALBERT's
    shared layer group) gives the output of its *last* call: the first forward pass runs to the end
    to count the calls, later ones stop at that call. Weights are shared with the wrapped model.
    """

    def __init__(self, model: nn.Module, layer: str) -> None:
        super().__init__()
        self.model = model
        self.layer = layer
        self.calls: int | None = None  # how often one forward pass calls the layer (known after the first)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        seen: list[Any] = []  # the layer's output at each call so far, the last one kept
        count = 0

        def stop(_module: nn.Module, _inputs: Any, output: Any) -> None:
            nonlocal count
            seen[:] = [output]
            count += 1
            if self.calls is not None and count >= self.calls:
                raise _EarlyExit(output)

        handle = self.model.get_submodule(self.layer).register_forward_hook(stop)
        try:
            self.model(*args, **kwargs)
        except _EarlyExit as exit_:
            return exit_.output
        finally:
            handle.remove()
        if seen:
            self.calls = count
            return seen[0]
        raise InputError(f"Layer {self.layer!r} was not called during the model's forward pass, so it has no "
                         "output to extract; choose a layer the forward pass uses.")

    def extra_repr(self) -> str:
        return f"layer={self.layer!r}"


def _check_layer(model: nn.Module, layer: str) -> None:
    names = [name for name, _ in model.named_modules() if name]
    if layer in names:
        return
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
    hint = f"Closest names: {close}." if close else f"Valid names include: {names[:8]}."
    raise LayerNotFoundError(f"{type(model).__name__} has no layer {layer!r}. {hint} "
                             "List them all with [name for name, _ in model.named_modules()].")


def feature_extractor(model: nn.Module, layer: str, *, output: OutputSpec = None) -> nn.Module:
    """A module returning the output of ``layer`` (a ``named_modules`` name such as ``"classifier.0"``).

    Built with ``torch.fx`` where the model traces (the graph is pruned after the layer), and with a
    forward hook that stops the forward pass early where it does not (Hugging Face models). Either
    way nothing after the layer is computed, and the weights are shared with ``model`` (not copied).
    Call it as you call the model: ``extractor(x)``, or ``extractor(**batch)`` for keyword inputs.

    Args:
        model: the PyTorch module to cut.
        layer: the name of the layer whose output becomes the feature.
        output: for a layer that returns a structure (a tuple, a ``ModelOutput``), which tensor to
            return (a key/attribute, an index or a callable, see ``dldebug.model_io``); None returns
            the layer's output as it is.

    Returns:
        An ``nn.Module`` taking the model's inputs and returning that layer's output.

    Raises:
        LayerNotFoundError: ``layer`` is not a module of ``model`` (the message lists close names).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> feature_extractor(net, "1")(torch.zeros(3, 4)).shape
        torch.Size([3, 8])
    """
    _check_layer(model, layer)
    extractor: nn.Module
    try:
        extractor = _fx_extractor(model, layer)
    except Exception:  # any tracing failure (data-dependent control flow, ...): fall back to hooks
        extractor = HookedExtractor(model, layer)
    return extractor if output is None else _Selected(extractor, output)


class _Selected(nn.Module):
    """Picks one tensor of a structured layer output (``output=``)."""

    def __init__(self, extractor: nn.Module, output: OutputSpec) -> None:
        super().__init__()
        self.extractor = extractor
        self.output = output

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return select_output(self.extractor(*args, **kwargs), self.output, tool="feature_extractor")


class _CutTracer(fx.Tracer):
    def __init__(self, layer: str) -> None:
        super().__init__()
        self.layer = layer

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name == self.layer or super().is_leaf_module(m, module_qualified_name)


def _fx_extractor(model: nn.Module, layer: str) -> fx.GraphModule:
    graph = _CutTracer(layer).trace(model)
    calls = [n for n in graph.nodes if n.op == "call_module" and n.target == layer]
    target = calls[-1] if calls else None  # a shared layer: its last call
    if target is None:
        raise LookupError(f"{layer} is not called in the traced graph")
    for node in list(graph.nodes):
        if node.op == "output":
            graph.erase_node(node)
    graph.output(target)
    module = fx.GraphModule(model, graph, class_name=f"{type(model).__name__}Features")
    module.graph.eliminate_dead_code()
    module.delete_all_unused_submodules()
    module.recompile()
    return module


def _blocks(model: nn.Module) -> list[str]:
    """Names of the outermost repeated blocks: the children of a ``ModuleList`` of modules (BERT's
    ``encoder.layer``, GPT-2's ``h``, ResNet's ``stages``), or of a ``Sequential`` of two or more
    modules of one class (torchvision's ``layer1``). A block is one unit: a cut never falls inside it."""
    found: list[str] = []
    for name, module in model.named_modules():
        children = list(module.named_children())
        if not children or any(next(c.children(), None) is None for _, c in children):
            continue
        stack = isinstance(module, nn.ModuleList) or (
            isinstance(module, nn.Sequential) and len(children) >= 2 and len({type(c) for _, c in children}) == 1)
        if stack:
            found.extend(f"{name}.{child}" if name else child for child, _ in children)
    return [b for b in found if not any(b.startswith(f"{outer}.") for outer in found)]


def _ordered_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's units in registration order: leaf modules, with each repeated block as one unit.

    Registration order is call order except around a stack of blocks, where a norm may be registered
    on the wrong side of it (:func:`_norms_in_call_order`).
    """
    blocks = _blocks(model)
    units: list[tuple[str, nn.Module]] = []
    for name, module in leaf_modules(model):
        if name == "(model)":
            continue
        block = next((b for b in blocks if name.startswith(f"{b}.")), None)
        if block is None:
            units.append((name, module))
        elif not units or units[-1][0] != block:
            units.append((block, model.get_submodule(block)))
    return _norms_in_call_order(units, blocks)


def _is_norm(module: nn.Module) -> bool:
    """A normalisation layer: torch's, or a model's own (``T5LayerNorm``, ``LlamaRMSNorm``)."""
    return isinstance(module, _KEPT_AFTER_BLOCKS) or (
        not _is_block(module) and type(module).__name__.endswith(("Norm", "LayerNorm", "RMSNorm")))


def _norms_in_call_order(units: list[tuple[str, nn.Module]], blocks: list[str]) -> list[tuple[str, nn.Module]]:
    """Move a stack's final norm registered before its blocks (OPT's ``decoder.final_layer_norm``) after them,
    and an embedding norm registered after them (BART's ``decoder.layernorm_embedding``) before them.

    Both are siblings of the stack, named for what they do ("final", "ln_f"; "embed"): the forward pass
    calls them after and before the blocks whatever their registration order.
    """
    stacks = dict.fromkeys(b.rpartition(".")[0] for b in blocks)
    for stack in stacks:
        parent = stack.rpartition(".")[0]
        names = [n for n, _ in units]
        inside = [i for i, n in enumerate(names) if n.rpartition(".")[0] == stack and n in blocks]
        if not inside:
            continue
        first, last = inside[0], inside[-1]
        moved_after = [u for i, u in enumerate(units) if i < first and _sibling_norm(u, parent, ("final", "ln_f"))]
        moved_before = [u for i, u in enumerate(units) if i > last and _sibling_norm(u, parent, ("embed",))]
        if not moved_after and not moved_before:
            continue
        kept = [u for u in units if u not in moved_after and u not in moved_before]
        block_names = {names[i] for i in inside}
        at_first = next(i for i, (n, _) in enumerate(kept) if n in block_names)
        at_last = max(i for i, (n, _) in enumerate(kept) if n in block_names)
        units = kept[:at_first] + moved_before + kept[at_first:at_last + 1] + moved_after + kept[at_last + 1:]
    return units


def _sibling_norm(unit: tuple[str, nn.Module], parent: str, words: tuple[str, ...]) -> bool:
    name, module = unit
    owner, _, leaf = name.rpartition(".")
    return owner == parent and _is_norm(module) and any(w in leaf.lower() for w in words)


def _is_block(module: nn.Module) -> bool:
    return next(module.children(), None) is not None


def _width(module: nn.Module) -> int | None:
    """The output width of a linear or convolution unit (the output layer's candidates), else None."""
    if _is_block(module):
        return None
    if is_linear_like(module):
        return linear_shape(module)[0]
    return int(module.out_channels) if isinstance(module, CONVOLUTIONS) else None


def _output_layer(layers: list[tuple[str, nn.Module]], num_classes: int | None) -> int | None:
    """Index of the output layer: the last linear/conv unit (matching ``num_classes`` when given);
    None for a backbone without a head (no linear/conv unit after its last block)."""
    candidates = [i for i, (_, m) in enumerate(layers) if _width(m) is not None]
    last_block = max((i for i, (_, m) in enumerate(layers) if _is_block(m)), default=-1)
    if num_classes is not None:
        candidates = [i for i in candidates if _width(layers[i][1]) == num_classes]
        if not candidates or candidates[-1] < last_block:
            widths = sorted({w for _, m in layers if (w := _width(m)) is not None})
            raise InputError(f"No Linear or convolution outputs num_classes={num_classes}; their output sizes "
                             f"are {widths}. Pass the class count the model was trained for.")
    if not candidates and last_block < 0:
        raise InputError("The model has no Linear or convolution layer to treat as its output layer.")
    if not candidates or candidates[-1] < last_block:
        return None  # a backbone: its blocks are the last layers with weights
    return candidates[-1]


_KEPT_AFTER_BLOCKS = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _cut_index(model: nn.Module, num_classes: int | None) -> tuple[list[tuple[str, nn.Module]], int, int | None]:
    """The units, the index of the cut and of the output layer (None: a backbone without a head)."""
    layers = _ordered_layers(model)
    output = _output_layer(layers, num_classes)
    end = len(layers) if output is None else output
    last_spatial = max((i for i, (_, m) in enumerate(layers[:end]) if isinstance(m, _SPATIAL) or _is_block(m)),
                       default=-1)
    last_block = max((i for i, (_, m) in enumerate(layers[:end]) if _is_block(m)), default=-1)
    after = layers[last_block + 1:end]
    if last_block >= 0 and all(not isinstance(m, _SPATIAL) or isinstance(m, POOLING) or _is_norm(m)
                               for _, m in after):
        # a stack of blocks (transformer layers, ResNet stages): cut after the last block and its final norm,
        # before the pooler and the head (a pooling layer before a head is kept); a backbone cuts at its last block
        cut = last_block
        while cut + 1 < end and (_is_norm(layers[cut + 1][1]) or (
                output is not None and isinstance(layers[cut + 1][1], POOLING))):
            cut += 1
        return layers, cut, output
    assert output is not None  # without blocks _output_layer returns a layer or raises
    linears = [i for i in range(last_spatial + 1, output) if is_linear_like(layers[i][1])]
    # keep the first FC after the convolutions (fc_1) when the head has more than one; else cut before the head
    cut = linears[0] if linears else max(last_spatial, output - 1)
    return layers, cut, output


def suggested_cut(model: nn.Module, *, num_classes: int | None = None) -> str:
    """The layer to cut at for transfer: the first FC after the convolutions (``fc_1``), else the last
    layer before the output layer (e.g. ResNet's ``avgpool``); for a stack of blocks (a transformer,
    ResNet stages) the last block or the norm right after it, before the pooler and the head.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> suggested_cut(net)
        '2'
    """
    layers, cut, _ = _cut_index(model, num_classes)
    return layers[cut][0] if cut >= 0 else layers[0][0]


def task_specific_layers(model: nn.Module, *, num_classes: int | None = None) -> list[str]:
    """The layers with weights after :func:`suggested_cut` — the ones to drop or re-train for a new task.

    The head is what follows the last spatial/sequence unit (convolution, pooling, recurrent,
    attention, or a repeated block such as a transformer layer, which is never cut inside); the
    output layer is the last linear layer (or convolution, for dense models) — the one with
    ``num_classes`` outputs when that is given. Layer order is registration order.

    Args:
        model: the PyTorch module.
        num_classes: the class count, to pick the output layer among several candidates.

    Returns:
        Layer names in order, ending with the output layer; empty for a backbone without a head.

    Raises:
        InputError: no layer produces ``num_classes`` outputs.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> task_specific_layers(net, num_classes=2)
        ['4']
    """
    layers, cut, output = _cut_index(model, num_classes)
    if output is None:
        return []
    has_weights = [name for name, m in layers[cut + 1:output + 1] if any(True for _ in m.parameters())]
    return has_weights or [layers[output][0]]


def _role(index: int, name: str, cut: int, output: int | None, specific: list[str]) -> str:
    if index == cut:
        return "suggested cut (kept)"
    if index == output:
        return "output layer"
    if name in specific:
        return "task-specific"
    return "after the output" if output is not None and index > output else "head"


def transfer_report(model: nn.Module, *, num_classes: int | None = None) -> Report:
    """Where to cut ``model`` for transfer learning: the head's layers and their roles (lesson 4).

    Returns:
        A Report with the table ``transfer.layers`` (the suggested cut and every layer after it, with its
        role) and an info finding ``transfer.head`` naming the cut and the layers to re-train.

    Raises:
        InputError: as :func:`task_specific_layers`.
    """
    layers, cut, output = _cut_index(model, num_classes)
    specific = task_specific_layers(model, num_classes=num_classes)
    start = max(cut, 0)
    rows = [(name, layer_kind(module), sum(p.numel() for p in module.parameters()),
             _role(index, name, cut, output, specific))
            for index, (name, module) in enumerate(layers[start:], start=start)]
    cut_name = layers[start][0]
    if output is None:
        message = (f"{type(model).__name__} has no task head: the whole model is a feature extractor; its last "
                   f"block is {cut_name!r}.")
        evidence: dict[str, Any] = {"suggested_cut": cut_name, "task_specific": "", "output_layer": None,
                                    "output_size": None}
    else:
        out_name, width = layers[output][0], _width(layers[output][1])
        message = (f"For transfer learning keep the layers up to {cut_name!r} as the feature extractor and re-train "
                   f"{specific} (output layer {out_name!r}, {width} outputs).")
        evidence = {"suggested_cut": cut_name, "task_specific": ", ".join(specific), "output_layer": out_name,
                    "output_size": width}
    finding = Finding("transfer.head", Severity.INFO, message, evidence,
                      fix=f"dldebug.feature_extractor(model, {cut_name!r}), then a new head for the new task.",
                      lesson=4)
    table = Table("transfer.layers", ("layer", "type", "params", "role"), tuple(rows),
                  caption="The closer to the output, the more task-specific; the lesson keeps the convolutions "
                          "and the first FC layer (fc_1); transformer stacks are cut after their last block.")
    return Report([finding], title="Transfer learning: where to cut", tables=(table,))


def count_flops(module: nn.Module, *args: torch.Tensor) -> int:
    """FLOPs of one forward pass, by ``torch.utils.flop_counter`` (for comparing a cut with the model)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*args)
    return int(counter.get_total_flops())
