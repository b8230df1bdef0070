"""Bad arguments and inputs of the locally connected layers: one clear error each (regressions of the fuzzer in
tests/reliability), and the odd-but-valid inputs that must work: empty batches, autocast activations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dldebug.errors import ConfigError, InputError
from dldebug.nn import LocallyConnected1d, LocallyConnected2d


def _layer(**kwargs):
    return LocallyConnected2d(**(dict(in_channels=2, out_channels=3, input_size=6, kernel_size=3) | kwargs))


@pytest.mark.parametrize("kwargs, message", [
    (dict(stride=1.5), "stride must be an int >= 1 or a pair of them; got 1.5."),
    (dict(stride=None), "stride must be an int >= 1 or a pair of them; got None."),
    (dict(kernel_size="3"), "kernel_size must be an int >= 1 or a pair of them; got '3'."),
    (dict(dilation=True), "dilation must be an int >= 1 or a pair of them; got True."),
    (dict(in_channels=True), "in_channels must be a positive int; got True."),
    (dict(out_channels=2.0), "out_channels must be a positive int; got 2.0."),
    (dict(bias="yes"), "bias must be True or False; got 'yes'."),
    (dict(padding_mode=None), "padding_mode must be one of 'zeros', 'reflect', 'replicate', 'circular'; got None."),
    (dict(dtype=False), "dtype must be a floating torch.dtype (torch.float32, torch.bfloat16, ...) or None; got False"),
    (dict(dtype=torch.int64), "dtype must be a floating torch.dtype"),
    (dict(out_channels=2**40), "LocallyConnected2d with weight shape (4, 4, 1099511627776, 2, 3, 3) needs"),
])
def test_bad_arguments_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError) as info:
        _layer(**kwargs)
    assert str(info.value).startswith(message), str(info.value)


def test_weights_larger_than_memory_are_refused_before_allocating(monkeypatch):
    import dldebug.nn.locally_connected_args as args

    monkeypatch.setattr(args, "memory_limit_bytes", lambda: 10_000)
    with pytest.raises(ConfigError, match=r"needs 0\.0 GiB \(one filter per output location\), more than the"):
        _layer(out_channels=64)
    monkeypatch.undo()
    assert _layer(out_channels=64).weight.shape == (4, 4, 64, 2, 3, 3)  # the healthy case


@pytest.mark.parametrize("x, message", [
    (3.0, "LocallyConnected2d expects a tensor; got float."),
    ([[1.0]], "LocallyConnected2d expects a tensor; got list."),
    (torch.zeros(1, 2, 6, 6, dtype=torch.float64), "LocallyConnected2d has torch.float32 weights on cpu but got a "
                                                   "torch.float64 input on cpu"),
    (torch.zeros(1, 2, 6, 6, dtype=torch.int64), "LocallyConnected2d has torch.float32 weights on cpu but got a "
                                                 "torch.int64 input"),
])
def test_bad_inputs_are_input_errors(x, message):
    with pytest.raises(InputError) as info:
        _layer()(x)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("bias", [True, False])
def test_empty_batch_gives_an_empty_output_with_gradients(bias):
    layer = _layer(bias=bias, stride=2, padding=1)
    out = layer(torch.zeros(0, 2, 6, 6))
    assert out.shape == (0, 3, 3, 3)
    out.sum().backward()
    assert layer.weight.grad is not None and not layer.weight.grad.any()
    conv = torch.nn.Conv2d(2, 3, 3, stride=2, padding=1)  # the oracle: Conv2d's shape for the same batch
    assert conv(torch.zeros(0, 2, 6, 6)).shape == out.shape
    assert LocallyConnected1d(2, 3, 8, 3)(torch.zeros(0, 2, 8)).shape == (0, 3, 6)


def test_autocast_activations_are_cast_to_the_weights_dtype():
    torch.manual_seed(0)
    layer = _layer()
    x = torch.randn(2, 2, 6, 6)
    expected = layer(x.bfloat16().float())  # what the layer sees: bf16 values, float32 arithmetic
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x.bfloat16())
    torch.testing.assert_close(out, expected)
    naive = F.conv2d(x.bfloat16().float(), layer.weight[0, 0])[:, :, :1, :1] + layer.bias[:, :1, :1]
    torch.testing.assert_close(out[:, :, :1, :1], naive, rtol=1e-5, atol=1e-5)  # location (0, 0) by hand


def test_sizes_beyond_what_torch_can_index_are_config_errors():
    # found by the fuzzer: a stride of 2**65 reached unfold and failed with "Overflow when unpacking long long"
    with pytest.raises(ConfigError, match=r"stride must be an int >= 1 or a pair of them; got \(36893488147419103232, "
                                          r"1\)\. Sizes are at most 2\*\*31 - 1\."):
        _layer(stride=(2**65, 1))
    assert _layer(stride=(2**20, 1)).output_size == (1, 4)  # a huge but indexable stride is fine
