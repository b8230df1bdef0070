"""``CompressionResult``: the compressed model, a per-layer table, totals and a Report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from dldebug.compress.lowrank import break_even_rank, layer_bias, layer_matrix, layer_shape
from dldebug.compress.ranks import KEEP_DENSE, layer_params
from dldebug.compress.selection import SkippedLayer
from dldebug.compress.spectrum import LayerSpectrum
from dldebug.findings import Figure, Finding, Report, Series, Severity, Table
from dldebug.weights import is_hf_conv1d, unique_parameter_count

__all__ = ["CompressionResult", "build_result", "count_params", "rank_error_figure", "skip_finding"]

LESSON = 7
_MAX_POINTS = 400  # rank-vs-error curves are subsampled beyond this many ranks


def count_params(model: nn.Module) -> int:
    """Parameters of ``model``, each shared (tied) tensor once: ``weights.unique_parameter_count``."""
    return unique_parameter_count(model)


@dataclass(frozen=True)
class CompressionResult:
    """What :func:`compress_linear_layers` did.

    Attributes:
        model: the compressed model (the user's own object only with ``inplace=True``).
        table: one row per considered layer: name, kind (``linear``, ``hf_conv1d``, ``conv1x1``), shape,
            rank (None = kept dense), status (``compressed``, ``skipped_break_even``,
            ``skipped_tied_weights``, ``skipped_unsupported``), params before/after, retained energy,
            relative weight error, relative output error on the calibration data (None without it),
            break-even rank, SVD method (a ``compress.*`` finding says why each skipped layer was kept).
        report: a Report with ``compress.*`` findings, the table and a rank-vs-error figure per layer.
        params_before, params_after: unique parameters of the considered layers (weights + biases;
            a tensor shared by two of them counted once).
        model_params_before, model_params_after: unique parameters of the whole model
            (``weights.unique_parameter_count``: a tied tensor counted once).
        accuracy_before, accuracy_after: ``eval_fn`` on the original and compressed models, or None.
    """

    model: nn.Module
    table: Table
    report: Report
    params_before: int
    params_after: int
    model_params_before: int
    model_params_after: int
    accuracy_before: float | None = None
    accuracy_after: float | None = None

    @property
    def compression_ratio(self) -> float:
        """``params_after / params_before`` of the considered layers (1.0 = nothing saved)."""
        return self.params_after / self.params_before if self.params_before else 1.0

    @property
    def ranks(self) -> dict[str, int | None]:
        """Layer name -> chosen rank (None where the layer stays dense)."""
        return dict(zip(self.table.column("name"), self.table.column("rank"), strict=True))

    def __repr__(self) -> str:
        compressed = sum(1 for r in self.ranks.values() if r is not None)
        return (f"CompressionResult(layers compressed={compressed}/{len(self.ranks)}, params "
                f"{self.params_before:,} -> {self.params_after:,} ({self.compression_ratio:.1%}), model "
                f"{self.model_params_before:,} -> {self.model_params_after:,})")


def _measured_output_error(spectrum: LayerSpectrum, rank: int) -> float | None:
    """Relative output error of the built factors on the recorded inputs (an independent check of the curve)."""
    x = spectrum.inputs
    if x is None:
        return None
    module = spectrum.module
    weight = layer_matrix(module).to(x)  # the rows live on the CPU; measure there
    bias = layer_bias(module)
    first, second = spectrum.factors(rank)
    exact = x @ weight.T
    approx = (x @ first.to(x).T) @ second.to(x).T
    reference = exact if bias is None else exact + bias.detach().to(x)
    denom = float(reference.norm())
    return float((approx - exact).norm()) / denom if denom > 0 else 0.0


def _kind(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        return "conv1x1"
    return "hf_conv1d" if is_hf_conv1d(module) else "linear"


def _row(name: str, module: nn.Module, spectrum: LayerSpectrum | None, rank: int) -> dict[str, object]:
    m, n = layer_shape(module)
    kind = _kind(module)
    bias = m if layer_bias(module) is not None else 0
    row: dict[str, object] = {"name": name, "kind": kind, "shape": f"{m} x {n}", "rank": None,
                              "status": "skipped_break_even", "params_before": m * n + bias,
                              "params_after": m * n + bias, "retained_energy": 1.0, "weight_error": 0.0,
                              "output_error": None if spectrum is None or spectrum.inputs is None else 0.0,
                              "break_even_rank": round(break_even_rank(m, n), 2),
                              "svd": None if spectrum is None else spectrum.method}
    if spectrum is not None and rank != KEEP_DENSE:
        row.update(rank=rank, status="compressed", params_after=layer_params(spectrum, rank),
                   retained_energy=round(float(spectrum.retained_energy[rank]), 6),
                   weight_error=round(float(spectrum.weight_error[rank]), 6),
                   output_error=_rounded(_measured_output_error(spectrum, rank)))
    return row


def _skipped_row(skip: SkippedLayer) -> dict[str, object]:
    row = _row(skip.name, skip.module, None, KEEP_DENSE)
    row.update(status=f"skipped_{skip.reason}", output_error=None)
    return row


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def rank_error_figure(spectrum: LayerSpectrum, chosen: int | None) -> Figure:
    """Relative weight (and output) error against rank for one layer, chosen and break-even ranks marked."""
    step = max(1, spectrum.k // _MAX_POINTS)
    ranks = list(range(0, spectrum.k + 1, step))
    series = [Series("relative weight error", ranks, [float(spectrum.weight_error[t]) for t in ranks])]
    if spectrum.output_error is not None:
        series.append(Series("relative output error (calibration data)", ranks,
                             [float(spectrum.output_error[t]) for t in ranks]))
    markers = [] if not chosen else [(float(chosen), f"chosen rank {chosen}")]
    even = break_even_rank(spectrum.m, spectrum.n)
    if even <= spectrum.k + 1:
        markers.append((even, f"break-even {even:.0f}"))
    how = "data-aware (output error minimised)" if spectrum.data_aware else f"plain SVD ({spectrum.method})"
    return Figure(f"compress.rank_error.{spectrum.name}", title=f"{spectrum.name}: error vs rank",
                  series=tuple(series), markers=tuple(markers), xlabel="rank t", ylabel="relative error",
                  caption=f"{spectrum.m} x {spectrum.n} layer, {how}. Parameters at rank t: "
                          f"t*({spectrum.m}+{spectrum.n}) vs {spectrum.m * spectrum.n} dense.")


def _applied(rows: Sequence[Mapping[str, object]], totals: Mapping[str, int], mode: str, value: float) -> Finding:
    done = [r for r in rows if r["status"] == "compressed"]
    saved = 1 - totals["params_after"] / max(1, totals["params_before"])
    model_saved = 1 - totals["model_params_after"] / max(1, totals["model_params_before"])
    kept = {str(r["status"]) for r in rows if r["status"] != "compressed"}
    fix = None
    if not done:
        fix = ("Every layer was at or past break-even: lower the rank or energy target." if kept ==
               {"skipped_break_even"} else "See the other compress.* findings for why each layer was kept dense.")
    return Finding(
        "compress.applied", Severity.INFO if done else Severity.WARNING,
        f"Compressed {len(done)} of {len(rows)} linear layers by truncated SVD ({mode}={value:g}): their "
        f"{totals['params_before']:,} -> {totals['params_after']:,} parameters ({saved:.1%} fewer); the model "
        f"holds {totals['model_params_before']:,} -> {totals['model_params_after']:,} unique parameters "
        f"({model_saved:.1%} fewer).",
        {"layers_compressed": len(done), "layers_considered": len(rows), "mode": mode, "value": value, **totals},
        fix=fix, lesson=LESSON)


def skip_finding(skip: SkippedLayer) -> Finding:
    """The info finding that says why a linear layer was kept dense (never skipped silently)."""
    m, n = layer_shape(skip.module)
    shape = f"{m} x {n}"
    evidence: dict[str, object] = {"layer": skip.name, "shape": shape, "type": type(skip.module).__name__}
    if skip.reason == "tied_weights":
        evidence["tied_to"] = ", ".join(skip.tied_to)
        return Finding("compress.tied_weights", Severity.INFO,
                       f"{skip.name} ({shape}) kept dense: {skip.detail}", evidence,
                       fix="Nothing to do: tied weights stay tied. To compress it anyway, untie it first "
                           "(e.g. config.tie_word_embeddings=False) and accept the larger model.", lesson=LESSON)
    return Finding("compress.skipped_unsupported", Severity.INFO,
                   f"{skip.name} ({shape}) kept dense: {skip.detail}", evidence,
                   fix="Nothing to do; if the layer's forward is called normally, replace it by an nn.Linear "
                       "holding the same weights and compress that.", lesson=LESSON)


def _findings(rows: Sequence[Mapping[str, object]], skipped: Sequence[SkippedLayer], totals: Mapping[str, int],
              mode: str, value: float, budget_met: bool) -> list[Finding]:
    findings = [_applied(rows, totals, mode, value)]
    findings.extend(skip_finding(skip) for skip in skipped)
    for r in rows:
        if r["status"] == "skipped_break_even":
            findings.append(Finding(
                "compress.skipped_break_even", Severity.INFO,
                f"{r['name']} ({r['shape']}) kept dense: the rank it needs is at or past break-even "
                f"{r['break_even_rank']}, where two factors hold at least as many weights.",
                {"layer": r["name"], "shape": r["shape"], "break_even_rank": r["break_even_rank"]},
                fix="Nothing to do: a factorisation there would not save parameters or time.", lesson=LESSON))
    if not budget_met:
        findings.append(Finding(
            "compress.budget_unreachable", Severity.WARNING,
            f"param_ratio={value:g} is below what rank 1 in every layer needs; every layer got rank 1.",
            {"param_ratio": value, **totals},
            fix="Raise param_ratio, or compress fewer layers (layers=[...]).", lesson=LESSON))
    return findings


def _accuracy_finding(before: float, after: float, max_drop: float) -> Finding:
    drop = before - after
    evidence = {"accuracy_before": before, "accuracy_after": after, "drop": drop, "max_accuracy_drop": max_drop}
    if drop > max_drop:
        return Finding("compress.accuracy_drop", Severity.WARNING,
                       f"Accuracy fell from {before:.4f} to {after:.4f} ({drop * 100:.2f} points, more than "
                       f"{max_drop * 100:.2f}).", evidence,
                       fix="Keep more energy or a larger param_ratio, use calib_data (data-aware), or "
                           "fine-tune the compressed model for an epoch.", lesson=LESSON)
    return Finding("compress.accuracy_kept", Severity.INFO,
                   f"Accuracy {before:.4f} -> {after:.4f}: within {max_drop * 100:.2f} points.", evidence,
                   lesson=LESSON)


def _layer_totals(rows: Sequence[Mapping[str, object]], modules: Sequence[nn.Module]) -> dict[str, int]:
    """Unique parameters of the considered layers before, and after the compressed rows' savings."""
    before = unique_parameter_count(nn.ModuleList(modules)) if modules else 0
    saved = sum(int(r["params_before"]) - int(r["params_after"])  # type: ignore[call-overload]
                for r in rows if r["status"] == "compressed")
    return {"params_before": before, "params_after": before - saved}


def build_result(model: nn.Module, *, layers: Mapping[str, nn.Module], spectra: Sequence[LayerSpectrum],
                 ranks: Mapping[str, int], mode: str, value: float, budget_met: bool, model_params_before: int,
                 accuracy: tuple[float | None, float | None], max_accuracy_drop: float,
                 skipped: Sequence[SkippedLayer] = ()) -> CompressionResult:
    """Assemble the table, totals, findings and figures of one compression."""
    by_name = {s.name: s for s in spectra}
    rows = [_row(name, module, by_name.get(name), ranks.get(name, KEEP_DENSE)) for name, module in layers.items()]
    rows.extend(_skipped_row(skip) for skip in skipped)
    modules = [*layers.values(), *(skip.module for skip in skipped)]
    # A compressed layer's weight is never shared (tied layers are skipped), so its savings are exact.
    totals = {**_layer_totals(rows, modules), "model_params_before": model_params_before,
              "model_params_after": count_params(model)}
    table = Table.from_records("compress.layers", rows,
                               caption="Errors are relative (Frobenius); output error is measured on the "
                                       "calibration inputs; rank None = kept dense.")
    findings = _findings(rows, skipped, totals, mode, value, budget_met)
    before, after = accuracy
    if before is not None and after is not None:
        findings.append(_accuracy_finding(float(before), float(after), max_accuracy_drop))
    figures = [rank_error_figure(s, ranks.get(s.name) or None) for s in spectra]
    report = Report(findings, title="Truncated-SVD compression of linear layers (lesson 7)", tables=(table,),
                    figures=figures, meta={"mode": mode, "value": value})
    return CompressionResult(model, table, report, totals["params_before"], totals["params_after"],
                             model_params_before, totals["model_params_after"],
                             None if before is None else float(before), None if after is None else float(after))

