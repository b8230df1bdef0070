"""The result of :func:`dldebug.compare_models`: a per-layer table, the first divergence, a Report.

A :class:`Comparison` is truthy when every paired layer (and the final output)
agrees within tolerance, and it round-trips through JSON with all its evidence
(captured tensors are not kept).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from dldebug.compare.explain import Explanation
from dldebug.errors import FileFormatError
from dldebug.evidence import dumps_strict, loads_strict
from dldebug.findings import Figure, Report, Table, plain

__all__ = ["Comparison", "LayerComparison", "explanation_dict"]

_COLUMNS = ("#", "layer a", "layer b", "kind", "shape", "max abs", "mean abs", "rel error", "cosine", "SQNR dB",
            "mean a", "mean b", "weights", "status")
_NARROW = ("#", "layer a", "layer b", "kind", "max abs", "rel error", "weights", "status")
_NARROWEST = ("#", "layer a", "layer b", "max abs", "status")


def _short(value: Any, limit: int) -> Any:
    """A long layer name keeps its end (``...layer.1.attention.self.value``): the end tells layers apart."""
    if isinstance(value, str) and len(value) > limit:
        return "…" + value[-(limit - 1):]
    return value


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
    status: str  # "match" | "diverged" | "shape mismatch" | "not shadowed" | "diverged, not shadowed"
    metrics: dict[str, Any] | None = None
    view: str = "identity"
    note: str = ""
    explanations: list[dict[str, Any]] = field(default_factory=list)
    unpaired_before: list[str] = field(default_factory=list)

    @property
    def within(self) -> bool:
        return self.status == "match"

    @property
    def within_metrics(self) -> bool:
        """The metrics are within tolerance (whatever the status says about how they were obtained)."""
        return bool(self.metrics and self.metrics.get("within"))

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
    unpaired_a: list[dict[str, str]] = field(default_factory=list)
    unpaired_b: list[dict[str, str]] = field(default_factory=list)

    # -- queries ------------------------------------------------------------------------------------
    def __bool__(self) -> bool:
        return bool(self.rows) and not self.divergences

    @property
    def first_divergence(self) -> LayerComparison | None:
        """The first layer (in a's order) outside tolerance or of mismatched shape, or None when all agree."""
        return next(iter(self.divergences), None)

    @property
    def divergences(self) -> list[LayerComparison]:
        """Layers outside tolerance or whose shapes could not be aligned.

        In shadow mode the final output and layers that could not be fed a's input are judged on their
        propagated values; those count only when no earlier layer diverged (else propagation explains them).
        """
        out: list[LayerComparison] = []
        for row in self.rows:
            judged_alone = row.status in ("diverged", "shape mismatch") and not self._propagated(row)
            propagated = row.status in ("diverged", "shape mismatch", "diverged, not shadowed")
            if judged_alone or (propagated and not out):
                out.append(row)
        return out

    def _propagated(self, row: LayerComparison) -> bool:
        return self.settings.get("mode") == "shadow" and row.layer_a == "<output>"

    @property
    def between(self) -> tuple[str, str, list[str]] | None:
        """``(last agreeing layer, first divergent layer, unpaired layers between)`` when the divergence starts
        in a stretch of layers that were not compared, else None.

        None too when the first divergent pair's own weights differ: that explains the divergence where it is,
        whatever was not compared before it (a planted row of the final Linear after an unpaired Flatten).
        """
        first = self.first_divergence
        if first is None or not first.unpaired_before or first.weights.startswith("differ"):
            return None
        position = self.rows.index(first)
        before = self.rows[position - 1].layer_a if position else "<input>"
        if position and not self.rows[position - 1].within_metrics:
            return None
        return before, first.layer_a, list(first.unpaired_before)

    @property
    def layers(self) -> Table:
        """The per-layer table (also in ``report``)."""
        return self.layers_table()

    def layers_table(self, width: int | None = None) -> Table:
        """The per-layer table; with ``width`` (terminal columns) only the columns that fit, names shortened."""
        columns: tuple[str, ...] = _COLUMNS
        rows = [r.row() for r in self.rows]
        if width is not None and width < 160:
            keep = _NARROW if width >= 100 else _NARROWEST
            index = [_COLUMNS.index(c) for c in keep]
            limit = 22 if width >= 100 else 16
            columns = keep
            rows = [tuple(_short(row[i], limit) for i in index) for row in rows]
        return Table("compare.layers", columns, tuple(rows),
                     caption=f"{self.settings.get('framework_a')} (a) vs {self.settings.get('framework_b')} (b), "
                             f"{self.settings.get('mode')} mode, rtol={self.settings.get('rtol')}, "
                             f"atol={self.settings.get('atol')}; tolerance: max|a-b| <= atol + rtol*max|a|.")

    # -- report ---------------------------------------------------------------------------------------
    @property
    def report(self) -> Report:
        """Findings (``compare.diverged``, ``compare.config_mismatch``, ``compare.unmatched``,
        ``compare.low_coverage``, ``compare.not_shadowed``, ``compare.input_layout`` ...) + table + figure."""
        from dldebug.compare.verdict import build_report

        return build_report(self)

    def report_for_width(self, width: int | None) -> Report:
        """The report with the table narrowed to a terminal of ``width`` columns (see :meth:`layers_table`)."""
        from dldebug.compare.verdict import build_report

        return build_report(self, width=width)

    def figure(self) -> Figure:
        """Per-layer max and mean |a-b| on a log scale, with a marker at the first divergence."""
        from dldebug.compare.verdict import figure

        return figure(self)

    # -- serialisation --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"schema": "dldebug.comparison/1", "rows": [asdict(r) for r in self.rows],
                "unmatched_a": list(self.unmatched_a), "unmatched_b": list(self.unmatched_b),
                "settings": dict(self.settings), "unpaired_a": [dict(u) for u in self.unpaired_a],
                "unpaired_b": [dict(u) for u in self.unpaired_b]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        if data.get("schema") != "dldebug.comparison/1":
            raise FileFormatError(f"not a dldebug comparison: schema {data.get('schema')!r}, expected "
                                  "'dldebug.comparison/1'.")
        return cls([LayerComparison(**r) for r in data["rows"]], list(data["unmatched_a"]),
                   list(data["unmatched_b"]), dict(data["settings"]), [dict(u) for u in data.get("unpaired_a", [])],
                   [dict(u) for u in data.get("unpaired_b", [])])

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


def explanation_dict(e: Explanation) -> dict[str, Any]:
    return {"rule": e.rule, "message": e.message, "evidence": plain(dict(e.evidence)), "fix": e.fix,
            "affects_inference": e.affects_inference}
