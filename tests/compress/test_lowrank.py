"""lowrank_linear: the lesson's two-layer replacement, against numpy's SVD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dldebug.compress import break_even_rank, lowrank_linear, max_useful_rank
from dldebug.errors import InputError


@pytest.mark.parametrize(("m", "n"), [(20, 30), (30, 20), (17, 17)])
def test_full_rank_reproduces_outputs(m: int, n: int) -> None:
    torch.manual_seed(0)
    fc = nn.Linear(n, m)
    pair = lowrank_linear(fc, min(m, n))
    x = torch.randn(50, n)
    torch.testing.assert_close(pair(x), fc(x), rtol=1e-5, atol=1e-6)


def test_structure_is_the_lesson_first_without_bias_second_with_original_bias() -> None:
    torch.manual_seed(0)
    fc = nn.Linear(40, 12)
    pair = lowrank_linear(fc, 5)
    first, second = pair
    assert (first.in_features, first.out_features, first.bias) == (40, 5, None)
    assert (second.in_features, second.out_features) == (5, 12)
    torch.testing.assert_close(second.bias, fc.bias)
    assert second.bias.data_ptr() != fc.bias.data_ptr()  # a copy: the original layer stays independent


def test_truncation_is_numpys_best_rank_t_approximation() -> None:
    torch.manual_seed(1)
    fc = nn.Linear(30, 25)
    w = fc.weight.detach().double().numpy()
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    for rank in (1, 4, 10):
        pair = lowrank_linear(fc, rank)
        product = (pair[1].weight @ pair[0].weight).detach().double().numpy()
        best = (u[:, :rank] * s[:rank]) @ vt[:rank]
        np.testing.assert_allclose(product, best, atol=1e-5)
        # Eckart-Young: the error is the norm of the dropped singular values
        assert np.linalg.norm(w - product) == pytest.approx(np.sqrt((s[rank:] ** 2).sum()), rel=1e-4)


def test_conv1x1_with_stride_and_padding_becomes_two_1x1_convs() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 10, 1, stride=2, padding=1)
    pair = lowrank_linear(conv, 6)
    assert all(isinstance(c, nn.Conv2d) and c.kernel_size == (1, 1) for c in pair)
    x = torch.randn(2, 6, 9, 9)
    torch.testing.assert_close(pair(x), conv(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("layer", "rank", "message"), [
    (nn.Linear(8, 4), 5, "rank must be an int in 1..4 for a 4 x 8 layer; got 5."),
    (nn.Linear(8, 4), 0, "rank must be an int in 1..4 for a 4 x 8 layer; got 0."),
    (nn.Linear(8, 4), 2.0, "rank must be an int in 1..4 for a 4 x 8 layer; got 2.0."),
    (nn.Conv2d(3, 4, 3), 2, "lowrank_linear needs an nn.Linear, a transformers Conv1D or an ungrouped 1x1 "
                            "nn.Conv2d; got Conv2d(kernel_size=(3, 3), groups=1)."),
])
def test_bad_arguments_raise_clear_errors(layer: nn.Module, rank: object, message: str) -> None:
    with pytest.raises(InputError) as info:
        lowrank_linear(layer, rank)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_break_even_arithmetic() -> None:
    assert break_even_rank(25088, 4096) == pytest.approx(3521.2, abs=0.1)
    for m, n in [(8, 8), (4096, 4096), (10, 64), (7, 3)]:
        t = max_useful_rank(m, n)
        assert t * (m + n) < m * n <= (t + 1) * (m + n)


# ---- LowRankPair answers .weight / .bias like the layer it replaced ---------------------------------------


def test_the_pair_answers_weight_and_bias_in_the_replaced_layers_layout() -> None:
    import torch
    from torch import nn

    from dldebug.compress import lowrank_linear
    from dldebug.compress.lowrank import LowRankPair

    torch.manual_seed(0)
    fc, conv = nn.Linear(8, 5), nn.Conv2d(8, 5, 1)
    for layer in (fc, conv):
        pair = lowrank_linear(layer, 5)
        assert isinstance(pair, LowRankPair) and isinstance(pair, nn.Sequential)
        assert pair.weight.shape == layer.weight.shape and torch.allclose(pair.weight, layer.weight, atol=1e-5)
        assert torch.equal(pair.bias, pair[1].bias)
        assert sorted(pair.state_dict()) == ["0.weight", "1.bias", "1.weight"]
    assert (lowrank_linear(fc, 5).in_features, lowrank_linear(fc, 5).out_features) == (8, 5)


def test_the_pair_weight_follows_training_and_carries_gradients() -> None:
    import torch
    from torch import nn

    from dldebug.compress import lowrank_linear

    torch.manual_seed(0)
    pair = lowrank_linear(nn.Linear(6, 4), 3)
    with torch.no_grad():
        before = pair.weight
        assert pair.weight is before  # cached outside autograd ...
        pair[1].weight.mul_(2)
        assert torch.allclose(pair.weight, 2 * before)  # ... until a factor changes
    pair.weight.sum().backward()  # under autograd: a fresh product whose gradient reaches both factors
    assert pair[0].weight.grad is not None and pair[1].weight.grad is not None
