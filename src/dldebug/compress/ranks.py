"""Choosing a rank per layer: by energy, by output-error budget, or by a global parameter budget.

Each rule is a pure function of the layers' :class:`LayerSpectrum` and returns
``name -> rank``, where a rank of 0 means "keep the layer dense": the rule would
need a rank at or above break-even (``t >= m*n/(m+n)``), where two factors
hold at least as many weights as the original.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from dldebug.compress.lowrank import layer_bias
from dldebug.compress.spectrum import LayerSpectrum

__all__ = ["KEEP_DENSE", "layer_params", "ranks_by_energy", "ranks_by_max_error", "ranks_by_param_ratio",
           "ranks_fixed"]

KEEP_DENSE = 0


def layer_params(spectrum: LayerSpectrum, rank: int) -> int:
    """Parameters (weights + bias) of the layer at this rank; rank 0 means the dense layer."""
    bias = spectrum.m if layer_bias(spectrum.module) is not None else 0
    if rank == KEEP_DENSE:
        return spectrum.m * spectrum.n + bias
    return rank * (spectrum.m + spectrum.n) + bias


def _first_rank(curve: Sequence[float], ok: object, spectrum: LayerSpectrum) -> int:
    """Smallest rank 1..max_useful_rank whose curve value passes ``ok``; KEEP_DENSE if none."""
    limit = min(spectrum.k, spectrum.max_useful_rank)
    for rank in range(1, limit + 1):
        if ok(curve[rank]):  # type: ignore[operator]
            return rank
    return KEEP_DENSE


def ranks_fixed(spectra: Sequence[LayerSpectrum], rank: int) -> dict[str, int]:
    """The same rank everywhere, except where it does not save parameters."""
    return {s.name: rank if rank <= s.max_useful_rank else KEEP_DENSE for s in spectra}


def ranks_by_energy(spectra: Sequence[LayerSpectrum], energy: float) -> dict[str, int]:
    """Per layer, the smallest rank keeping at least ``energy`` of the spectrum's energy."""
    tolerance = 1e-12  # cumulative sums in float64: a spectrum that reaches 1.0 must pass energy=1.0
    return {s.name: _first_rank(s.retained_energy.tolist(), lambda e: e >= energy - tolerance, s)
            for s in spectra}


def ranks_by_max_error(spectra: Sequence[LayerSpectrum], max_error: float) -> dict[str, int]:
    """Per layer, the smallest rank whose relative output error on the calibration data is <= ``max_error``."""
    out = {}
    for s in spectra:
        assert s.output_error is not None  # checked by the caller: max_error needs calib_data
        out[s.name] = _first_rank(s.output_error.tolist(), lambda e: e <= max_error, s)
    return out


def ranks_by_param_ratio(spectra: Sequence[LayerSpectrum], param_ratio: float) -> tuple[dict[str, int], bool]:
    """Share a global budget of ``param_ratio`` x the layers' parameters, greedily by error per parameter.

    Every layer starts at rank 1; each step raises by one the rank of the layer
    whose next rank removes the most squared relative error per added parameter
    (output error when calibration data was given, else weight error), while the
    total fits the budget and ranks stay below break-even. A layer at its largest
    useful rank may take one last step back to dense (error 0), priced at the
    parameters that costs: a small head like a 10-class classifier saves almost
    nothing when factorised, so it goes back to dense first.

    Returns:
        (name -> rank, whether the budget was met; False when even rank 1 everywhere exceeds it).
    """
    budget = param_ratio * sum(layer_params(s, KEEP_DENSE) for s in spectra)
    ranks = {s.name: 1 for s in spectra if s.max_useful_rank >= 1}
    ranks.update({s.name: KEEP_DENSE for s in spectra if s.max_useful_rank < 1})
    used = sum(layer_params(s, ranks[s.name]) for s in spectra)
    if used > budget:
        return ranks, False
    curves = {s.name: [e * e for e in s.error_curve().tolist()] for s in spectra}
    by_name = {s.name: s for s in spectra}
    heap: list[tuple[float, int, str, int, int]] = []  # (-gain per parameter, tie-break, name, cost, next rank)

    def push(name: str) -> None:
        s, t = by_name[name], ranks[name]
        if t == KEEP_DENSE:
            return
        top = min(s.k, s.max_useful_rank)
        if t < top:
            step, gain, after = s.m + s.n, curves[name][t] - curves[name][t + 1], t + 1
        elif s.k >= s.max_useful_rank:  # the last step: back to the dense layer, error 0
            step = layer_params(s, KEEP_DENSE) - layer_params(s, t)
            gain, after = curves[name][t], KEEP_DENSE
        else:
            return
        heapq.heappush(heap, (-gain / max(1, step), len(heap), name, step, after))

    for name in ranks:
        push(name)
    while heap:
        _, _, name, step, after = heapq.heappop(heap)
        if used + step > budget:
            continue  # this layer no longer fits; smaller steps of other layers may
        ranks[name] = after
        used += step
        push(name)
    return ranks, True
