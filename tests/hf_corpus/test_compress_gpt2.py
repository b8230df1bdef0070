"""compress_linear_layers and ``dldebug compress`` on GPT2LMHeadModel: Conv1D, the tied lm_head, dict batches."""

from __future__ import annotations

import copy
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("transformers")

from dldebug.cli.app import main
from dldebug.compress import accuracy_vs_size, compress_linear_layers, lowrank_linear
from dldebug.compress.compress_layers import replace_layer
from dldebug.demo.tiny_hf import tiny_bert_classifier, tiny_gpt2_lm, token_batch
from dldebug.errors import InputError
from dldebug.io import load_model
from dldebug.weights import is_hf_conv1d, unique_parameter_count

CONV1D = [f"transformer.h.{i}.{part}" for i in range(2)
          for part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]


@pytest.fixture(scope="module")
def gpt2() -> nn.Module:
    return tiny_gpt2_lm()


@pytest.fixture(scope="module")
def tokens() -> dict[str, torch.Tensor]:
    return token_batch(num_labels=None)


def logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def test_conv1d_projections_are_compressed_and_the_tied_head_is_reported(gpt2: nn.Module) -> None:
    result = compress_linear_layers(gpt2, rank=8)
    rows = {row["name"]: row for row in result.table.records()}
    assert [name for name, row in rows.items() if row["status"] == "compressed"] == CONV1D
    assert {rows[name]["kind"] for name in CONV1D} == {"hf_conv1d"}
    assert rows["lm_head"]["status"] == "skipped_tied_weights"
    tied = result.report.get("compress.tied_weights")
    assert tied is not None and tied.evidence["tied_to"] == "transformer.wte.weight"
    # The counts are the models' real unique parameters, before and after.
    assert result.model_params_before == unique_parameter_count(gpt2) == 30_720
    assert result.model_params_after == unique_parameter_count(result.model) < result.model_params_before
    compressed = result.model
    assert compressed.lm_head.weight is compressed.transformer.wte.weight  # the tie is intact
    assert isinstance(compressed.transformer.h[0].attn.c_attn, nn.Sequential)
    assert is_hf_conv1d(gpt2.transformer.h[0].attn.c_attn)  # the original is untouched
    # Oracle: each (in, out) Conv1D at rank 8 keeps 8 * (in + out) of its in * out weights (biases stay).
    shapes = [(32, 96), (32, 32), (32, 128), (128, 32)] * 2
    assert result.model_params_after == 30_720 - sum(n * m - 8 * (n + m) for n, m in shapes) == 14_336
    applied = result.report.get("compress.applied")
    assert "the model holds 30,720 -> 14,336 unique parameters (53.3% fewer)" in applied.message


def test_a_conv1d_layer_can_be_named(gpt2: nn.Module) -> None:
    result = compress_linear_layers(gpt2, rank=4, layers=["transformer.h.1.mlp.c_fc"])
    assert result.ranks == {"transformer.h.1.mlp.c_fc": 4}
    saved = (128 * 32 + 128) - (4 * (128 + 32) + 128)
    assert result.model_params_after == result.model_params_before - saved


def test_the_size_curve_counts_unique_parameters_and_reports_the_tie(gpt2: nn.Module,
                                                                    tokens: dict[str, torch.Tensor]) -> None:
    reference = logits(gpt2, tokens).argmax(-1)

    def agreement(model: nn.Module) -> float:
        return float((logits(model, tokens).argmax(-1) == reference).float().mean())

    curve = accuracy_vs_size(gpt2, agreement, param_ratios=(0.3, 0.6), calib_data=tokens)
    assert curve.original.model_params == 30_720 and curve.original.accuracy == 1.0
    assert all(p.model_params < 30_720 for p in curve.points)
    assert [f.check for f in curve.report] == ["compress.size_tradeoff", "compress.tied_weights"]


def test_naming_the_tied_head_skips_it_with_its_reason(gpt2: nn.Module) -> None:
    result = compress_linear_layers(gpt2, rank=4, layers=["lm_head"])
    assert result.ranks == {"lm_head": None}
    assert result.report.has("compress.tied_weights")
    assert result.model_params_after == result.model_params_before  # nothing untied, nothing grown


def test_untied_models_get_no_tied_weights_finding() -> None:
    result = compress_linear_layers(tiny_bert_classifier(), rank=4)
    assert not result.report.has("compress.tied_weights")
    assert result.model_params_after < result.model_params_before


def test_full_rank_factors_reproduce_the_logits(gpt2: nn.Module, tokens: dict[str, torch.Tensor]) -> None:
    exact = copy.deepcopy(gpt2)
    for module in [m for m in exact.modules() if is_hf_conv1d(m)]:
        replace_layer(exact, module, lowrank_linear(module, min(module.weight.shape)))
    assert not any(is_hf_conv1d(m) for m in exact.modules())
    assert torch.allclose(logits(exact, tokens), logits(gpt2, tokens), atol=1e-5)


def test_energy_one_on_rank_four_weights_is_exact_and_smaller(tokens: dict[str, torch.Tensor]) -> None:
    model = tiny_gpt2_lm()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in [m for m in model.modules() if is_hf_conv1d(m)]:
            n, m = module.weight.shape
            module.weight.copy_(torch.randn(n, 4, generator=generator) @ torch.randn(4, m, generator=generator) / 20)
    for calib in (None, tokens):
        result = compress_linear_layers(model, energy=1.0, calib_data=calib)
        assert {result.ranks[name] for name in CONV1D} == {4}
        assert result.model_params_after == unique_parameter_count(result.model) < unique_parameter_count(model)
        assert torch.allclose(logits(result.model, tokens), logits(model, tokens), atol=1e-5)


def test_dict_calibration_batches_in_every_form(gpt2: nn.Module) -> None:
    batch = token_batch(num_labels=None)
    rows = [{k: v[i] for k, v in batch.items()} for i in range(len(batch["input_ids"]))]
    forms = {"dict": batch, "list of dicts": [batch],
             "DataLoader of dicts": torch.utils.data.DataLoader(rows, batch_size=4),
             "dict with labels": {**batch, "labels": batch["input_ids"]}}
    errors = {}
    for label, calib in forms.items():
        result = compress_linear_layers(gpt2, rank=8, calib_data=calib)
        assert result.report.get("compress.applied").evidence["layers_compressed"] == 8, label
        errors[label] = result.table.column("output_error")[:8]
    assert all(e is not None for e in errors["dict"])
    for label in forms:  # the same rows, batched differently: the same data-aware factors
        assert errors[label] == pytest.approx(errors["dict"], abs=1e-5), label


def test_a_calibration_batch_the_model_rejects_is_one_clear_error(gpt2: nn.Module) -> None:
    with pytest.raises(InputError) as info:
        compress_linear_layers(gpt2, rank=8, calib_data={"pixel_values": torch.zeros(2, 3)})
    message = str(info.value)
    assert message.startswith("the model failed on calibration batch 0 (dict with {pixel_values: Tensor(2, 3)}): "
                              "ValueError: You have to specify")  # GPT-2's own words: no input_ids
    assert "a dict of keyword inputs" in message


FACTORY = textwrap.dedent("""
    from dldebug.demo.tiny_hf import tiny_gpt2_lm

    def build():
        return tiny_gpt2_lm()
""")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "gpt2_factory.py").write_text(FACTORY)
    batch = token_batch(num_labels=None)
    np.savez(tmp_path / "tokens.npz", **{k: v.numpy() for k, v in batch.items()})
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cli_exports_gpt2_and_the_archive_matches(workdir: Path, gpt2: nn.Module,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compress", "gpt2_factory:build", "--rank", "8", "--calib", "tokens.npz", "--out", "g.pt2",
                 "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert [f["check"] for f in report["findings"]] == ["compress.applied", "compress.tied_weights"]
    expected = compress_linear_layers(gpt2, rank=8, calib_data=token_batch(num_labels=None)).model
    loaded = load_model(workdir / "g.pt2")
    five = token_batch(batch=5, num_labels=None, seed=3)  # another batch size: the batch dimension is dynamic
    with torch.no_grad():
        out = loaded(**five)
    assert isinstance(out, torch.Tensor)  # the archive returns the selected output: the logits
    assert torch.allclose(out, logits(expected, five), atol=1e-5)


def test_cli_output_names_the_returned_tensor(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compress", "gpt2_factory:build", "--rank", "8", "--calib", "tokens.npz", "--out", "g.pt2",
                 "--output", "cache"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "output='cache' is DynamicCache, expected a tensor." in err and "Traceback" not in err


@pytest.mark.parametrize(("calib", "message"), [
    ("8x12", "--calib takes a FILE of real inputs, not a shape; got '8x12'."),
    ("missing.npz", "missing.npz: calibration file not found"),
    ("missing.npz:input_ids", "missing.npz: calibration file not found"),
    ("tokens.npz:nope", "tokens.npz has no array 'nope'"),
])
def test_cli_calib_must_be_a_real_file(workdir: Path, calib: str, message: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compress", "gpt2_factory:build", "--rank", "8", "--calib", calib, "--out", "g.pt2"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and "Traceback" not in err
    assert not (workdir / "g.pt2").exists()
