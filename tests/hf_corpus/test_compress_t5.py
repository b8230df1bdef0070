"""compress_linear_layers on T5ForConditionalGeneration, whose feed-forward reads ``self.wo.weight`` outside
``wo``'s own forward (a dtype check at every call): the factorised pair must still answer ``.weight``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dldebug.cli.app import main
from dldebug.compress import compress_linear_layers, lowrank_linear
from dldebug.compress.compress_layers import replace_layer
from dldebug.compress.lowrank import LowRankPair
from dldebug.findings import Severity
from dldebug.io import load_model
from dldebug.weights import unique_parameter_count

transformers = pytest.importorskip("transformers")


def tiny_t5() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=100, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2,
                                   num_heads=2, decoder_start_token_id=0, pad_token_id=0)
    return transformers.T5ForConditionalGeneration(config).eval()


def batch(seed: int = 0, n: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(3, 100, (n, 10), generator=g),
            "decoder_input_ids": torch.randint(3, 100, (n, 5), generator=g)}


def logits(model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def test_the_compressed_t5_runs_and_stays_close() -> None:
    model = tiny_t5()
    result = compress_linear_layers(model, energy=0.9, calib_data=[batch(i) for i in range(4)])
    assert not [f for f in result.report.findings if f.severity >= Severity.WARNING]
    wos = [m for n, m in result.model.named_modules() if n.endswith("DenseReluDense.wo")]
    assert wos and all(isinstance(wo, LowRankPair) for wo in wos)  # every feed-forward output compressed
    assert {wo.weight.dtype for wo in wos} == {torch.float32}  # what T5's forward reads
    out, reference = logits(result.model, batch(9)), logits(model, batch(9))
    assert out.shape == reference.shape and torch.isfinite(out).all()
    assert result.model_params_after == unique_parameter_count(result.model) < unique_parameter_count(model)


def test_full_rank_pairs_reproduce_t5_exactly() -> None:
    model = tiny_t5()
    exact = tiny_t5()
    for name, module in [(n, m) for n, m in exact.named_modules() if type(m) is nn.Linear and n != "lm_head"]:
        replace_layer(exact, module, lowrank_linear(module, min(module.weight.shape)))
        assert isinstance(exact.get_submodule(name), LowRankPair)
    assert torch.allclose(logits(exact, batch(3)), logits(model, batch(3)), atol=1e-5)


FACTORY = textwrap.dedent("""
    import transformers

    def build():
        config = transformers.T5Config(vocab_size=100, d_model=32, d_kv=16, d_ff=64, num_layers=2,
                                       num_decoder_layers=2, num_heads=2, decoder_start_token_id=0, pad_token_id=0)
        return transformers.T5ForConditionalGeneration(config).eval()
""")


def test_cli_exports_the_compressed_t5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "t5_factory.py").write_text(FACTORY)
    np.savez(tmp_path / "calib.npz", **{k: v.numpy() for k, v in batch().items()})
    monkeypatch.chdir(tmp_path)
    assert main(["compress", "t5_factory:build", "--energy", "0.9", "--calib", "calib.npz", "--out", "t5.pt2"]) == 0
    archive = load_model(tmp_path / "t5.pt2")
    with torch.no_grad():
        out = archive(**batch(5, n=3))
    assert isinstance(out, torch.Tensor) and out.shape == (3, 5, 100)
