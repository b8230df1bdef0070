"""A :class:`~dldebug.compare.Comparison` as a Report: findings, the per-layer table and the error figure.

Findings (all lesson 10): ``compare.diverged`` (error), ``compare.config_mismatch``
(warning/info), ``compare.not_shadowed`` (warning: layers shadow mode could not
isolate), ``compare.low_coverage`` (warning), ``compare.unmatched`` (info, every
unpaired layer with its reason), ``compare.input_layout`` (info: an input was
transposed to a model's layout), ``compare.input_dtype`` (info: a half-precision input
was upcast to float32), ``compare.no_pairs`` (error).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from dldebug.findings import Figure, Finding, Report, Series, Severity

if TYPE_CHECKING:
    from dldebug.compare.comparison import Comparison

__all__ = ["LOW_COVERAGE", "build_report"]

_LESSON = 10
LOW_COVERAGE = 0.8  # below this paired share of either model's weighted layers: compare.low_coverage


def build_report(c: Comparison, *, width: int | None = None) -> Report:
    """The report of ``c``; ``width`` narrows the table for a terminal (JSON/HTML keep every column)."""
    findings = _divergence(c) + _config(c) + _not_shadowed(c) + _coverage(c) + _layouts(c)
    if not c.rows:
        findings.append(Finding("compare.no_pairs", Severity.ERROR, "no layer of a could be paired with b",
                                {"layers_a": len(c.unmatched_a), "layers_b": len(c.unmatched_b)},
                                "Pass mapping={'a_layer': 'b_layer'} to pair layers by name.", _LESSON))
    return Report(findings, title=f"Layer-by-layer comparison ({c.settings.get('mode')} mode)",
                  tables=(c.layers_table(width),), figures=(figure(c),), meta=c.settings)


def _divergence(c: Comparison) -> list[Finding]:
    first = c.first_divergence
    if first is None:
        return []
    cause = first.explanations[0] if first.explanations else None
    metrics = first.metrics or {}
    evidence: dict[str, Any] = {"layer_a": first.layer_a, "layer_b": first.layer_b, "index": first.index,
                                "status": first.status, **{k: v for k, v in metrics.items() if k != "within"},
                                "diverged_layers": len(c.divergences), "layers": len(c.rows)}
    where = f"at {first.layer_a} (a) / {first.layer_b} (b)"
    between = c.between
    if between is not None:
        before, after, unpaired = between
        where = (f"between {before} and {after}: the layers in between were not compared "
                 f"({', '.join(unpaired[:6])}{' ...' if len(unpaired) > 6 else ''})")
        evidence.update(between_a=before, between_b=after, unpaired_between=", ".join(unpaired[:20]))
    if cause:
        evidence["likely_cause"] = cause["rule"]
    message = (f"first divergence {where}: "
               + (f"max |a-b| {metrics['max_abs']:.3g}, rel error {metrics['rel_error']:.3g}" if metrics
                  else first.status)
               + (f"; likely cause: {cause['message']}" if cause else ""))
    if cause:
        fix = cause["fix"]
    elif between is not None:
        fix = ("Pair the layers in between with mapping={'a_layer': 'b_layer'}, or compare a smaller part of the "
               "models, to find which of them introduces the difference.")
    else:
        fix = ("No catalogued default explains it: inspect this layer's weights and settings in both models "
               "(shadow mode isolates the layer).")
    return [Finding("compare.diverged", Severity.ERROR, message, evidence, fix, _LESSON)]


def _config(c: Comparison) -> list[Finding]:
    out = []
    first = c.first_divergence
    for row in c.rows:
        for e in row.explanations:
            severity = Severity.WARNING if not row.within_metrics and e["affects_inference"] else Severity.INFO
            if row is first and e is row.explanations[0]:
                severity = Severity.WARNING
            out.append(Finding("compare.config_mismatch", severity, e["message"],
                               {"rule": e["rule"], "diverged": not row.within_metrics, **e["evidence"]}, e["fix"],
                               _LESSON))
    return out


def _not_shadowed(c: Comparison) -> list[Finding]:
    rows = [r for r in c.rows if r.status in ("not shadowed", "diverged, not shadowed")]
    if not rows:
        return []
    diverged = [r for r in rows if r.status == "diverged, not shadowed"]
    severity = Severity.ERROR if diverged and c.first_divergence in diverged else \
        Severity.WARNING if diverged else Severity.INFO
    names = ", ".join(f"{r.layer_a}/{r.layer_b}" for r in (diverged or rows)[:12])
    message = (f"{len(rows)} paired layer(s) could not be fed a's input in shadow mode"
               + (f"; {len(diverged)} of them differ in the propagated run ({names}), so shadow mode cannot say "
                  "whether they introduce the error" if diverged else f" ({names}); their propagated outputs agree"))
    return [Finding("compare.not_shadowed", severity, message,
                    {"not_shadowed": len(rows), "diverged_not_shadowed": len(diverged), "layers": names},
                    "Compare in propagate mode, or give mapping= pairs whose inputs both models expose.", _LESSON)]


def _coverage(c: Comparison) -> list[Finding]:
    out = []
    cov = c.settings.get("coverage", {})
    shares = {side: float(cov.get(f"weights_{side}", 1.0)) for side in ("a", "b")}
    low = {s: v for s, v in shares.items() if v < LOW_COVERAGE and cov.get(f"weighted_layers_{s}", 0)}
    if low:
        out.append(Finding(
            "compare.low_coverage", Severity.WARNING,
            "only " + " and ".join(f"{v:.0%} of model {s}'s layers with weights" for s, v in low.items())
            + " were paired and compared; a divergence in the others is seen only where it reaches a paired layer",
            {"paired_weighted_share_a": shares["a"], "paired_weighted_share_b": shares["b"],
             "paired_layer_share_a": cov.get("layers_a"), "paired_layer_share_b": cov.get("layers_b")},
            "Check compare.unmatched for the reasons; pair layers with mapping={'a_layer': 'b_layer'}.", _LESSON))
    if c.unpaired_a or c.unpaired_b:
        listed = [f"{u['layer']} ({u['type']}): {u['reason']}" for u in c.unpaired_a[:15]] + \
            [f"b: {u['layer']} ({u['type']}): {u['reason']}" for u in c.unpaired_b[:15]]
        out.append(Finding(
            "compare.unmatched", Severity.INFO,
            f"{len(c.unpaired_a)} layer(s) of a and {len(c.unpaired_b)} of b have no counterpart",
            {"unmatched_a": ", ".join(c.unmatched_a[:30]), "unmatched_b": ", ".join(c.unmatched_b[:30]),
             "reasons": "; ".join(listed)},
            "Pass mapping={'a_layer': 'b_layer'} to pair layers by name if these should match.", _LESSON))
    return out


def _layouts(c: Comparison) -> list[Finding]:
    out = []
    for side, moves in c.settings.get("transposed", {}).items():
        if moves:
            out.append(Finding(
                "compare.input_layout", Severity.INFO,
                f"model {side} ({c.settings.get(f'framework_{side}')}) takes "
                f"{c.settings.get('layouts', {}).get(side)} inputs; transposed: {'; '.join(moves)}",
                {"side": side, "transposed": "; ".join(moves)},
                "Nothing to do: the shapes make the transpose unambiguous.", _LESSON))
    converted = c.settings.get("converted_inputs") or []
    if converted:
        out.append(Finding(
            "compare.input_dtype", Severity.INFO, f"half-precision inputs were upcast: {'; '.join(converted)}",
            {"converted": "; ".join(converted)},
            "Nothing to do: each model still runs in its own precision (a PyTorch model in its parameters' dtype).",
            _LESSON))
    return out


def _finite(value: Any) -> float:
    value = float(value)
    return value if math.isfinite(value) else 1e30


def figure(c: Comparison) -> Figure:
    """Per-layer max and mean |a-b| on a log scale, with a marker at the first divergence."""
    floor = 1e-12  # zero differences are drawn at this floor on the log axis
    rows = [r for r in c.rows if r.metrics]
    xs = [float(r.index) for r in rows]
    series = tuple(
        Series(label, xs, [max(_finite(r.metrics[key]), floor) for r in rows], "line")  # type: ignore[index]
        for label, key in (("max |a-b|", "max_abs"), ("mean |a-b|", "mean_abs"), ("relative error", "rel_error")))
    tolerance = [c.settings.get("atol", 0.0) + c.settings.get("rtol", 0.0) *
                 max(abs(_finite(r.metrics.get("max_abs_a", 0.0))), 0.0) for r in rows]  # type: ignore[union-attr]
    if any(tolerance):
        series = (*series, Series("tolerance", xs, [max(t, floor) for t in tolerance], "step"))
    first = c.first_divergence
    markers = ((float(first.index), f"first divergence: {first.layer_a}"),) if first else ()
    return Figure("compare.layer_error", title="Per-layer difference between a and b", series=series,
                  markers=markers, xlabel="layer # (a's execution order)", ylabel="|a - b|", logy=True,
                  caption="x is the '#' column of the compare.layers table; zero differences are drawn at 1e-12.")
