"""The result of :func:`dldebug.compare_models`: a per-layer table, the first divergence, a Report.

A :class:`Comparison` is truthy when every paired layer (and the final output)
agrees within tolerance, and it round-trips through JSON with all its evidence
(captured tensors are not kept).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from dldebug.compare.explain import Explanation
from dldebug.errors import FileFormatError
from dldebug.evidence import dumps_strict, loads_strict
from dldebug.findings import (
    Figure,
    Finding,
    Report,
    Series,
    Severity,
    Table,
    plain,
)

__all__ = ["Comparison", "LayerComparison", "explanation_dict"]

_LESSON = 10
_COLUMNS = ("#", "layer a", "layer b", "kind", "shape", "max abs", "mean abs", "rel error", "cosine", "SQNR dB",
            "mean a", "mean b", "weights", "status")


@dataclass
class LayerComparison:
    """One paired layer: names, how they were paired, and the metrics (None when shapes could not be aligned)."""

    index: int
    layer_a: str
    layer_b: str
    kind: str
    shape: list[int]
    how: str
    weights: str
    status: str  # "match" | "diverged" | "shape mismatch" | "no shadow input" (unchecked)
    metrics: dict[str, Any] | None = None
    view: str = "identity"
    note: str = ""
    explanations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def within(self) -> bool:
        return self.status == "match"

    def row(self) -> tuple[Any, ...]:
        m = self.metrics or {}
        return (self.index, self.layer_a, self.layer_b, self.kind, "x".join(map(str, self.shape)),
                m.get("max_abs"), m.get("mean_abs"), m.get("rel_error"), m.get("cosine"), m.get("sqnr_db"),
                m.get("mean_a"), m.get("mean_b"), self.weights, self.status)


@dataclass
class Comparison:
    """Layer-by-layer agreement of model ``a`` (reference) and model ``b``.

    Attributes:
        rows: one :class:`LayerComparison` per paired layer, in a's execution order.
        unmatched_a: layers of a nothing in b was paired with (and likewise ``unmatched_b``).
        settings: frameworks, mode, tolerances, input description.
    """

    rows: list[LayerComparison]
    unmatched_a: list[str]
    unmatched_b: list[str]
    settings: dict[str, Any]

    # -- queries ------------------------------------------------------------------------------------
    def __bool__(self) -> bool:
        return bool(self.rows) and not self.divergences

    @property
    def first_divergence(self) -> LayerComparison | None:
        """The first layer (in a's order) outside tolerance or of mismatched shape, or None when all agree."""
        return next(iter(self.divergences), None)

    @property
    def divergences(self) -> list[LayerComparison]:
        """Layers outside tolerance or whose shapes could not be aligned (not those left unchecked)."""
        return [r for r in self.rows if r.status in ("diverged", "shape mismatch")]

    @property
    def layers(self) -> Table:
        """The per-layer table (also in ``report``)."""
        return Table("compare.layers", _COLUMNS, tuple(r.row() for r in self.rows),
                     caption=f"{self.settings.get('framework_a')} (a) vs {self.settings.get('framework_b')} (b), "
                             f"{self.settings.get('mode')} mode, rtol={self.settings.get('rtol')}, "
                             f"atol={self.settings.get('atol')}; tolerance: max|a-b| <= atol + rtol*max|a|.")

    # -- report ---------------------------------------------------------------------------------------
    @property
    def report(self) -> Report:
        """Findings ``compare.diverged`` / ``compare.config_mismatch`` / ``compare.unmatched`` + table + figure."""
        findings = self._divergence_findings() + self._config_findings()
        if self.unmatched_a or self.unmatched_b:
            findings.append(Finding(
                "compare.unmatched", Severity.INFO,
                f"{len(self.unmatched_a)} layer(s) of a and {len(self.unmatched_b)} of b have no counterpart",
                {"unmatched_a": ", ".join(self.unmatched_a[:30]), "unmatched_b": ", ".join(self.unmatched_b[:30])},
                "Pass mapping={'a_layer': 'b_layer'} to pair layers by name if these should match.", _LESSON))
        if not self.rows:
            findings.append(Finding("compare.no_pairs", Severity.ERROR, "no layer of a could be paired with b",
                                    {"layers_a": len(self.unmatched_a), "layers_b": len(self.unmatched_b)},
                                    "Pass mapping={'a_layer': 'b_layer'} to pair layers by name.", _LESSON))
        return Report(findings, title=f"Layer-by-layer comparison ({self.settings.get('mode')} mode)",
                      tables=(self.layers,), figures=(self.figure(),), meta=self.settings)

    def _divergence_findings(self) -> list[Finding]:
        first = self.first_divergence
        if first is None:
            return []
        cause = first.explanations[0] if first.explanations else None
        metrics = first.metrics or {}
        evidence = {"layer_a": first.layer_a, "layer_b": first.layer_b, "index": first.index, "status": first.status,
                    **{k: v for k, v in metrics.items() if k != "within"},
                    "diverged_layers": len(self.divergences), "layers": len(self.rows)}
        if cause:
            evidence["likely_cause"] = cause["rule"]
        message = (f"first divergence at {first.layer_a} (a) / {first.layer_b} (b): "
                   + (f"max |a-b| {metrics['max_abs']:.3g}, rel error {metrics['rel_error']:.3g}"
                      if metrics else first.status)
                   + (f"; likely cause: {cause['message']}" if cause else ""))
        fix = cause["fix"] if cause else ("No catalogued default explains it: inspect this layer's weights and "
                                          "settings in both models (shadow mode isolates the layer).")
        return [Finding("compare.diverged", Severity.ERROR, message, evidence, fix, _LESSON)]

    def _config_findings(self) -> list[Finding]:
        out = []
        first = self.first_divergence
        for row in self.rows:
            for e in row.explanations:
                severity = Severity.WARNING if not row.within and e["affects_inference"] else Severity.INFO
                if row is first and e is row.explanations[0]:
                    severity = Severity.WARNING
                out.append(Finding("compare.config_mismatch", severity, e["message"],
                                   {"rule": e["rule"], "diverged": not row.within, **e["evidence"]}, e["fix"],
                                   _LESSON))
        return out

    def figure(self) -> Figure:
        """Per-layer max and mean |a-b| on a log scale, with a marker at the first divergence."""
        floor = 1e-12  # zero differences are drawn at this floor on the log axis
        xs = [float(r.index) for r in self.rows if r.metrics]
        series = tuple(
            Series(label, xs, [max(_finite(r.metrics[key]), floor) for r in self.rows if r.metrics], "line")
            for label, key in (("max |a-b|", "max_abs"), ("mean |a-b|", "mean_abs"), ("relative error", "rel_error")))
        tolerance = [self.settings.get("atol", 0.0) + self.settings.get("rtol", 0.0) *
                     max(abs(_finite(r.metrics.get("max_abs_a", 0.0))), 0.0) for r in self.rows if r.metrics]
        if any(tolerance):
            series = (*series, Series("tolerance", xs, [max(t, floor) for t in tolerance], "step"))
        first = self.first_divergence
        markers = ((float(first.index), f"first divergence: {first.layer_a}"),) if first else ()
        return Figure("compare.layer_error", title="Per-layer difference between a and b", series=series,
                      markers=markers, xlabel="layer # (a's execution order)", ylabel="|a - b|", logy=True,
                      caption="x is the '#' column of the compare.layers table; zero differences are drawn at 1e-12.")

    # -- serialisation --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"schema": "dldebug.comparison/1", "rows": [asdict(r) for r in self.rows],
                "unmatched_a": list(self.unmatched_a), "unmatched_b": list(self.unmatched_b),
                "settings": dict(self.settings)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        if data.get("schema") != "dldebug.comparison/1":
            raise FileFormatError(f"not a dldebug comparison: schema {data.get('schema')!r}, expected "
                                  "'dldebug.comparison/1'.")
        return cls([LayerComparison(**r) for r in data["rows"]], list(data["unmatched_a"]),
                   list(data["unmatched_b"]), dict(data["settings"]))

    def to_json(self, *, indent: int | None = 2) -> str:
        return dumps_strict(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Comparison:
        return cls.from_dict(loads_strict(text, what="dldebug comparison JSON"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Comparison):
            return NotImplemented
        return self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        first = self.first_divergence
        where = "all within tolerance" if first is None else f"first divergence at {first.layer_a}/{first.layer_b}"
        return (f"Comparison({self.settings.get('framework_a')} vs {self.settings.get('framework_b')}, "
                f"{len(self.rows)} layers, {where})")


def _finite(value: Any) -> float:
    value = float(value)
    return value if math.isfinite(value) else 1e30


def explanation_dict(e: Explanation) -> dict[str, Any]:
    return {"rule": e.rule, "message": e.message, "evidence": plain(dict(e.evidence)), "fix": e.fix,
            "affects_inference": e.affects_inference}
