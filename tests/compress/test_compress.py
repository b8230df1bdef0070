"""compress_linear_layers: rank rules, break-even, sharing, inplace, data-aware."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from dldebug.compress import compress_linear_layers
from dldebug.compress.calibration import collect_layer_inputs
from dldebug.compress.spectrum import analyse_layer
from dldebug.errors import ConfigError, InputError, LayerNotFoundError
from dldebug.findings import Report


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_users_model_untouched_unless_inplace(mlp: nn.Sequential) -> None:
    before = _state(mlp)
    layers_before = list(mlp)
    result = compress_linear_layers(mlp, rank=3)
    assert result.model is not mlp
    assert list(mlp) == layers_before and isinstance(mlp[0], nn.Linear)
    assert all(torch.equal(before[k], v) for k, v in mlp.state_dict().items())
    assert isinstance(result.model[0], nn.Sequential)

    inplace = compress_linear_layers(mlp, rank=3, inplace=True)
    assert inplace.model is mlp and isinstance(mlp[0], nn.Sequential)


def test_weight_and_output_error_fall_monotonically_with_rank(mlp: nn.Sequential,
                                                              correlated_inputs: torch.Tensor) -> None:
    errors, measured = [], []
    for rank in range(1, 21, 2):
        result = compress_linear_layers(mlp, rank=rank, layers=["0"], calib_data=correlated_inputs,
                                        data_aware=False)
        row = result.table.records()[0]
        errors.append(row["weight_error"])
        # an independent oracle: the compressed model's first-layer outputs against the original's
        with torch.no_grad():
            measured.append(float((result.model[0](correlated_inputs) - mlp[0](correlated_inputs)).norm()))
    assert all(a >= b for a, b in itertools.pairwise(errors)), errors
    assert all(a >= b - 1e-6 for a, b in itertools.pairwise(measured)), measured
    assert errors[-1] < errors[0]


def test_table_errors_agree_with_direct_measurement(mlp: nn.Sequential, correlated_inputs: torch.Tensor) -> None:
    for aware in (False, True):
        result = compress_linear_layers(mlp, rank=4, layers=["0"], calib_data=correlated_inputs,
                                        data_aware=aware)
        row = result.table.records()[0]
        w = mlp[0].weight.detach().double()
        approx = (result.model[0][1].weight @ result.model[0][0].weight).detach().double()
        assert row["weight_error"] == pytest.approx(float((w - approx).norm() / w.norm()), rel=1e-4)
        with torch.no_grad():
            out, ref = result.model[0](correlated_inputs), mlp[0](correlated_inputs)
        assert row["output_error"] == pytest.approx(float((out - ref).norm() / ref.norm()), rel=1e-3)
        spectrum = analyse_layer("0", mlp[0], 4, inputs=correlated_inputs, data_aware=aware)
        assert spectrum.output_error is not None
        assert float(spectrum.output_error[4]) == pytest.approx(row["output_error"], rel=1e-3)


def test_skip_at_break_even() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))  # break-even rank 8*8/16 = 4
    kept = compress_linear_layers(net, rank=4)
    assert kept.ranks == {"0": None, "2": None}
    assert kept.params_after == kept.params_before
    skipped = kept.report.filter(check="compress.skipped_break_even")
    assert [f.evidence["layer"] for f in skipped] == ["0", "2"]
    assert skipped[0].evidence["break_even_rank"] == 4.0 and skipped[0].lesson == 7
    assert kept.report.get("compress.applied").severity.value == "warning"
    done = compress_linear_layers(net, rank=3)
    assert done.ranks == {"0": 3, "2": 3}
    assert not done.report.has("compress.skipped_break_even")
    assert done.params_after == 2 * (3 * 16 + 8)


def test_shared_layer_compressed_once_and_stays_shared(shared_twice: nn.Module) -> None:
    model = shared_twice
    result = compress_linear_layers(model, rank=4)
    assert len(result.table.rows) == 1
    new = result.model.fc
    assert isinstance(new, nn.Sequential)
    # oracle: numpy's rank-4 SVD of W, applied twice around the ReLU
    w, b = model.fc.weight.detach().double().numpy(), model.fc.bias.detach().double().numpy()
    u, s, vt = np.linalg.svd(w)
    w4 = (u[:, :4] * s[:4]) @ vt[:4]
    x = torch.randn(10, 16)
    expected = np.maximum(x.double().numpy() @ w4.T + b, 0) @ w4.T + b
    np.testing.assert_allclose(result.model(x).detach().double().numpy(), expected, atol=1e-5)
    assert result.model_params_after == 4 * 32 + 16  # the shared factors counted once


def test_shared_module_in_two_containers_is_replaced_everywhere(correlated_inputs: torch.Tensor) -> None:
    torch.manual_seed(0)
    shared = nn.Linear(48, 48)
    model = nn.Sequential(nn.Sequential(shared, nn.ReLU()), nn.Sequential(shared))
    result = compress_linear_layers(model, energy=0.5, calib_data=correlated_inputs,
                                    layers=["0.0", "1.0"])  # both names of one module: compressed once
    assert len(result.table.rows) == 1
    assert result.model[0][0] is result.model[1][0] and isinstance(result.model[0][0], nn.Sequential)


def test_nested_layers_and_conv1x1(nested: nn.Module) -> None:
    model = nested
    x = torch.randn(8, 12, 8, 8)
    result = compress_linear_layers(model, rank=6, calib_data=x)  # conv break-even 12*24/36 = 8
    assert [r["name"] for r in result.table.records()] == ["stem.0", "blocks.a.0", "blocks.b"]
    assert [r["kind"] for r in result.table.records()] == ["conv1x1", "linear", "linear"]
    stem = result.model.stem[0]
    assert isinstance(stem, nn.Sequential) and all(isinstance(c, nn.Conv2d) for c in stem)
    assert result.model(x).shape == model(x).shape
    # oracle: eager conv2d with numpy's rank-6 truncation of the 24 x 12 kernel matrix
    conv = model.stem[0]
    u, s, vt = np.linalg.svd(conv.weight.detach().double().reshape(24, 12).numpy())
    w6 = torch.from_numpy((u[:, :6] * s[:6]) @ vt[:6]).float().reshape(24, 12, 1, 1)
    expected = torch.nn.functional.conv2d(x, w6, conv.bias, stride=2, padding=1)
    plain = compress_linear_layers(model, rank=6, layers=["stem.0"])
    torch.testing.assert_close(plain.model.stem[0](x), expected, rtol=1e-4, atol=1e-5)


def test_energy_rule_picks_the_smallest_rank_reaching_the_target(mlp: nn.Sequential) -> None:
    result = compress_linear_layers(mlp, energy=0.9, layers=["0", "2"])
    for name, rank in result.ranks.items():
        s = np.linalg.svd(mlp.get_submodule(name).weight.detach().double().numpy(), compute_uv=False)
        kept = np.cumsum(s ** 2) / np.sum(s ** 2)
        assert rank == int(np.argmax(kept >= 0.9)) + 1


def test_max_error_rule_meets_the_budget_with_the_smallest_rank(mlp: nn.Sequential,
                                                                correlated_inputs: torch.Tensor) -> None:
    result = compress_linear_layers(mlp, max_error=0.1, layers=["0"], calib_data=correlated_inputs)
    row = result.table.records()[0]
    assert row["output_error"] <= 0.1
    smaller = compress_linear_layers(mlp, rank=row["rank"] - 1, layers=["0"], calib_data=correlated_inputs)
    assert smaller.table.records()[0]["output_error"] > 0.1


def test_param_ratio_greedy_is_optimal_against_brute_force(mlp: nn.Sequential) -> None:
    ratio = 0.25
    result = compress_linear_layers(mlp, param_ratio=ratio, layers=["0", "2"], data_aware=False)
    assert result.params_after <= ratio * result.params_before
    # brute force: every rank pair within budget, minimising the summed squared relative weight errors
    spectra = [analyse_layer(n, mlp.get_submodule(n), 27, method="exact") for n in ("0", "2")]
    best, best_ranks = float("inf"), None
    for r0, r2 in itertools.product(range(1, 28), range(1, 22)):
        params = r0 * (64 + 48) + 64 + r2 * (32 + 64) + 32
        if params <= ratio * result.params_before:
            cost = float(spectra[0].weight_error[r0]) ** 2 + float(spectra[1].weight_error[r2]) ** 2
            if cost < best:
                best, best_ranks = cost, (r0, r2)
    assert (result.ranks["0"], result.ranks["2"]) == best_ranks


def test_param_ratio_too_small_warns(mlp: nn.Sequential) -> None:
    result = compress_linear_layers(mlp, param_ratio=0.001)
    finding = result.report.get("compress.budget_unreachable")
    assert finding is not None and finding.severity.value == "warning"
    assert not compress_linear_layers(mlp, param_ratio=0.5).report.has("compress.budget_unreachable")


def test_data_aware_matches_explicit_cholesky_whitening(mlp: nn.Sequential,
                                                        correlated_inputs: torch.Tensor) -> None:
    # oracle: whiten by the Cholesky factor of the input covariance, SVD, truncate, undo (numpy, float64)
    x = correlated_inputs.double().numpy()
    w = mlp[0].weight.detach().double().numpy()
    cov = x.T @ x / len(x)
    lower = np.linalg.cholesky(cov)
    u, s, vt = np.linalg.svd(w @ lower)
    for rank in (2, 5, 9):
        expected = (u[:, :rank] * s[:rank]) @ vt[:rank] @ np.linalg.inv(lower)
        spectrum = analyse_layer("0", mlp[0], rank, inputs=correlated_inputs, data_aware=True, damping=0.0)
        first, second = spectrum.factors(rank)
        got = (second.double() @ first.double()).numpy()
        np.testing.assert_allclose(got @ cov @ got.T, expected @ cov @ expected.T, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(x @ got.T, x @ expected.T, rtol=1e-3, atol=1e-4)


def test_data_aware_beats_plain_at_equal_rank(mlp: nn.Sequential, correlated_inputs: torch.Tensor) -> None:
    calib, held_out = correlated_inputs[:300], correlated_inputs[300:]
    for rank in (2, 4, 8):
        errors = {}
        for aware in (False, True):
            result = compress_linear_layers(mlp, rank=rank, layers=["0"], calib_data=calib, data_aware=aware)
            with torch.no_grad():
                ref = mlp[0](held_out)
                errors[aware] = float((result.model[0](held_out) - ref).norm() / ref.norm())
        assert errors[True] < errors[False], (rank, errors)


def test_result_report_table_and_figures(mlp: nn.Sequential, correlated_inputs: torch.Tensor) -> None:
    result = compress_linear_layers(mlp, energy=0.9, calib_data=correlated_inputs)
    assert result.table.columns == ("name", "kind", "shape", "rank", "status", "params_before", "params_after",
                                    "retained_energy", "weight_error", "output_error", "break_even_rank", "svd")
    figure = result.report.figure("compress.rank_error.0")
    assert [s.label for s in figure.series] == ["relative weight error", "relative output error (calibration data)"]
    assert Report.from_json(result.report.to_json()) == result.report
    assert "CompressionResult(layers compressed=" in repr(result)
    assert result.model_params_before == sum(p.numel() for p in mlp.parameters())


def test_accuracy_drop_fires_and_stays_silent(mlp: nn.Sequential, correlated_inputs: torch.Tensor) -> None:
    labels = mlp(correlated_inputs).argmax(1)

    def agreement(model: nn.Module) -> float:
        with torch.no_grad():
            return float((model(correlated_inputs).argmax(1) == labels).float().mean())

    bad = compress_linear_layers(mlp, rank=1, eval_fn=agreement)
    assert bad.report.get("compress.accuracy_drop") is not None and bad.accuracy_after < 0.99
    good = compress_linear_layers(mlp, max_error=1e-3, eval_fn=agreement, calib_data=correlated_inputs)
    assert not good.report.has("compress.accuracy_drop") and good.report.has("compress.accuracy_kept")


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({}, ConfigError, "Give exactly one of rank, energy, max_error, param_ratio to choose the ranks; got none."),
    ({"rank": 2, "energy": 0.9}, ConfigError, "Give exactly one of rank, energy, max_error, param_ratio to "
                                              "choose the ranks; got rank=2, energy=0.9."),
    ({"energy": 1.5}, ConfigError, "energy is the fraction of spectral energy to keep, in (0, 1]; got 1.5."),
    ({"param_ratio": 1.0}, ConfigError, "param_ratio is the fraction of the layers' parameters to keep"),
    ({"max_error": 0.1}, ConfigError, "max_error is measured on the layers' outputs, so it needs calib_data"),
    ({"rank": 2, "layers": ["0.weight"]}, LayerNotFoundError, "No layer named '0.weight' in Sequential"),
    ({"rank": 2, "layers": ["1"]}, InputError,
     "Layer '1' is a ReLU; only nn.Linear, transformers Conv1D and ungrouped 1x1"),
    ({"rank": 2, "calib_data": "x.npy"}, InputError,
     "calib_data must be a tensor or a dict of keyword inputs (one batch)"),
])
def test_bad_configuration_errors(mlp: nn.Sequential, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error) as info:
        compress_linear_layers(mlp, **kwargs)
    assert message in str(info.value)


def test_calibration_records_every_call_of_a_shared_layer(shared_twice: nn.Module) -> None:
    rows = collect_layer_inputs(shared_twice, {"fc": shared_twice.fc}, torch.randn(5, 16))["fc"]
    assert rows.shape == (10, 16)
    assert shared_twice.training  # restored after the eval-mode pass
