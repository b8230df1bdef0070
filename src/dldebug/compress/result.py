"""``CompressionResult``: the compressed model, a per-layer table, totals and a Report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from dldebug.compress.lowrank import break_even_rank, layer_bias, layer_matrix, layer_shape
from dldebug.compress.ranks import KEEP_DENSE, layer_params
from dldebug.compress.spectrum import LayerSpectrum
from dldebug.findings import Figure, Finding, Report, Series, Severity, Table

__all__ = ["CompressionResult", "build_result", "count_params", "rank_error_figure"]

LESSON = 7
_MAX_POINTS = 400  # rank-vs-error curves are subsampled beyond this many ranks


def count_params(model: nn.Module) -> int:
    """Parameters of ``model``, each shared parameter once."""
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class CompressionResult:
    """What :func:`compress_linear_layers` did.

    Attributes:
        model: the compressed model (the user's own object only with ``inplace=True``).
        table: one row per considered layer: name, kind, shape, rank (None = kept dense), status,
            params before/after, retained energy, relative weight error, relative output error on the
            calibration data (None without it), break-even rank, SVD method.
        report: a Report with ``compress.*`` findings, the table and a rank-vs-error figure per layer.
        params_before, params_after: parameters of the considered layers (weights + biases).
        model_params_before, model_params_after: parameters of the whole model.
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


def _row(name: str, module: nn.Module, spectrum: LayerSpectrum | None, rank: int) -> dict[str, object]:
    m, n = layer_shape(module)
    kind = "conv1x1" if isinstance(module, nn.Conv2d) else "linear"
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


def _findings(rows: Sequence[Mapping[str, object]], totals: Mapping[str, int], mode: str, value: float,
              budget_met: bool) -> list[Finding]:
    done = [r for r in rows if r["status"] == "compressed"]
    saved = 1 - totals["params_after"] / max(1, totals["params_before"])
    findings = [Finding(
        "compress.applied", Severity.INFO if done else Severity.WARNING,
        f"Compressed {len(done)} of {len(rows)} linear layers by truncated SVD ({mode}={value:g}): "
        f"{totals['params_before']:,} -> {totals['params_after']:,} parameters ({saved:.1%} fewer).",
        {"layers_compressed": len(done), "layers_considered": len(rows), "mode": mode, "value": value, **totals},
        fix=None if done else "Every layer was at or past break-even: lower the rank or energy target.",
        lesson=LESSON)]
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


def build_result(model: nn.Module, *, layers: Mapping[str, nn.Module], spectra: Sequence[LayerSpectrum],
                 ranks: Mapping[str, int], mode: str, value: float, budget_met: bool, model_params_before: int,
                 accuracy: tuple[float | None, float | None], max_accuracy_drop: float) -> CompressionResult:
    """Assemble the table, totals, findings and figures of one compression."""
    by_name = {s.name: s for s in spectra}
    rows = [_row(name, module, by_name.get(name), ranks.get(name, KEEP_DENSE)) for name, module in layers.items()]
    totals = {"params_before": sum(int(r["params_before"]) for r in rows),  # type: ignore[call-overload]
              "params_after": sum(int(r["params_after"]) for r in rows),  # type: ignore[call-overload]
              "model_params_before": model_params_before, "model_params_after": count_params(model)}
    table = Table.from_records("compress.layers", rows,
                               caption="Errors are relative (Frobenius); output error is measured on the "
                                       "calibration inputs; rank None = kept dense.")
    findings = _findings(rows, totals, mode, value, budget_met)
    before, after = accuracy
    if before is not None and after is not None:
        findings.append(_accuracy_finding(float(before), float(after), max_accuracy_drop))
    figures = [rank_error_figure(s, ranks.get(s.name) or None) for s in spectra]
    report = Report(findings, title="Truncated-SVD compression of linear layers (lesson 7)", tables=(table,),
                    figures=figures, meta={"mode": mode, "value": value})
    return CompressionResult(model, table, report, totals["params_before"], totals["params_after"],
                             model_params_before, totals["model_params_after"],
                             None if before is None else float(before), None if after is None else float(after))

