"""ONNX models analysed once per content: graph grouping, layer facts and onnxruntime sessions.

Comparing the same ONNX model again (a fixed port on the other side, another input)
should not re-read its constants, re-group its nodes or build a new onnxruntime
session. Everything here is keyed by a digest of the model's content (:func:`fingerprint`), so
any edit of the model (a weight, a node, an attribute) is a new key: nothing stale is ever
reused. Each entry keeps a private copy of the model, so a later in-place edit of the
caller's proto cannot reach it. The last four models are kept.
"""

from __future__ import annotations

import hashlib
import threading
import zlib
from collections import OrderedDict
from typing import Any, TypeVar

import numpy as np

from dldebug.compare.runners.onnx_graph import Group, OnnxGraph

__all__ = ["AnalysedModel", "analysed", "fingerprint", "session_for"]

_KEEP = 4
_LOCK = threading.RLock()
_MODELS: OrderedDict[bytes, AnalysedModel] = OrderedDict()
_SESSIONS: OrderedDict[bytes, Any] = OrderedDict()  # other graphs (shadow mode), by their bytes' digest

LayerFacts = tuple[str, Any, dict[str, np.ndarray], dict[str, Any], str]
K = TypeVar("K")
V = TypeVar("V")


def _remember(cache: OrderedDict[K, V], key: K, value: V) -> V:
    with _LOCK:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > _KEEP:
            cache.popitem(last=False)
    return value


def _new_session(ort: Any, data: bytes) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def session_for(ort: Any, proto: Any) -> Any:
    """An onnxruntime session of ``proto``, reused while the same bytes come again."""
    data = proto.SerializeToString()
    key = hashlib.sha256(data).digest()
    with _LOCK:
        session = _SESSIONS.get(key)
    return session if session is not None else _remember(_SESSIONS, key, _new_session(ort, data))


class AnalysedModel:
    """A private copy of one ONNX model with its :class:`OnnxGraph`, per-layer facts and sessions."""

    def __init__(self, proto: Any, key: bytes) -> None:
        import onnx

        self.key = key
        self.proto = onnx.ModelProto()
        self.proto.CopyFrom(proto)
        self.graph = OnnxGraph(self.proto)
        self._facts: dict[tuple[str, bool], LayerFacts] = {}
        self._sessions: OrderedDict[tuple[str, ...], Any] = OrderedDict()

    def facts(self, group: Group, output: np.ndarray | None) -> LayerFacts:
        """``(kind, main node, params, config, params digest)`` of a group; params are read-only arrays shared
        between calls, the digest names the model's content and the group."""
        key = (group.name, output is not None and output.ndim == 2)  # the one fact kind() reads from the output
        with _LOCK:
            found = self._facts.get(key)
        if found is None:
            kind, main = self.graph.kind(group, output)
            params = self.graph.params(kind, group, main)
            for array in params.values():
                array.flags.writeable = False
            digest = f"onnx:{self.key.hex()}:{group.name}:{kind}" if params else ""
            found = self._facts[key] = (kind, main, params, self.graph.config(kind, group, main), digest)
        return found

    def exposing(self, ort: Any, names: tuple[str, ...], skip: set[str]) -> Any:
        """A session of the model with ``names`` (those not in ``skip``) exposed as graph outputs."""
        import onnx

        with _LOCK:
            session = self._sessions.get(names)
        if session is not None:
            return session
        proto = onnx.ModelProto()
        proto.CopyFrom(self.proto)
        existing = {o.name for o in proto.graph.output} | skip
        for name in names:
            if name not in existing:
                proto.graph.output.append(onnx.ValueInfoProto(name=name))
        return _remember(self._sessions, names, _new_session(ort, proto.SerializeToString()))


def fingerprint(proto: Any) -> bytes:
    """A digest of everything in ``proto`` that changes what it computes, without serialising the weights.

    Serialising a model and hashing it costs ~4 ms per MB; here each initializer's raw bytes are
    summed by CRC-32 (~0.2 ms per MB) and every other field (nodes, typed tensor data, inputs,
    outputs, value infos, opsets, functions) is hashed as serialised.
    """
    digest = hashlib.sha256()
    graph = proto.graph
    for init in graph.initializer:
        raw = init.raw_data
        if raw:
            digest.update(f"{init.name}|{list(init.dims)}|{init.data_type}|{len(raw)}|{zlib.crc32(raw)}|"
                          f"{init.data_location}".encode())
            for entry in init.external_data:
                digest.update(entry.SerializeToString())
        else:
            digest.update(init.SerializeToString())
    for field in (graph.node, graph.input, graph.output, graph.value_info, graph.sparse_initializer,
                  proto.opset_import, proto.functions):
        digest.update(b"|%d|" % len(field))
        for item in field:
            digest.update(item.SerializeToString())
    digest.update(f"|{proto.ir_version}|{len(graph.initializer)}".encode())
    return digest.digest()


def analysed(proto: Any) -> AnalysedModel:
    """The analysis of ``proto`` (by content, see :func:`fingerprint`), made on first sight."""
    key = fingerprint(proto)
    with _LOCK:
        found = _MODELS.get(key)
        if found is not None:
            _MODELS.move_to_end(key)
            return found
    return _remember(_MODELS, key, AnalysedModel(proto, key))
