"""LocallyConnected1d/2d against a naive per-location loop, plus autograd, compile, export and errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dldebug.errors import ConfigError, InputError
from dldebug.nn import LocallyConnected1d, LocallyConnected2d
from dldebug.nn import locally_connected_fused as locally_connected_module
from dldebug.nn.locally_connected import locally_connected2d


def naive_locally_connected2d(layer: LocallyConnected2d, x: torch.Tensor) -> torch.Tensor:
    """The definition: at every output location, a Conv2d with that location's own weight."""
    (ph, pw), (kh, kw) = layer.padding, layer.kernel_size
    (sh, sw), (dh, dw) = layer.stride, layer.dilation
    pad = (pw, pw, ph, ph)
    xp = F.pad(x, pad) if layer.padding_mode == "zeros" else F.pad(x, pad, mode=layer.padding_mode)
    rows = []
    for i in range(layer.output_size[0]):
        cols = []
        for j in range(layer.output_size[1]):
            patch = xp[:, :, i * sh: i * sh + dh * (kh - 1) + 1: dh, j * sw: j * sw + dw * (kw - 1) + 1: dw]
            cols.append((patch.unsqueeze(1) * layer.weight[i, j]).sum(dim=(2, 3, 4)))
        rows.append(torch.stack(cols, dim=-1))
    out = torch.stack(rows, dim=-2)
    return out if layer.bias is None else out + layer.bias


def naive_locally_connected1d(layer: LocallyConnected1d, x: torch.Tensor) -> torch.Tensor:
    (_, p), (_, k), (_, s), (_, d) = layer.padding, layer.kernel_size, layer.stride, layer.dilation
    xp = F.pad(x, (p, p)) if layer.padding_mode == "zeros" else F.pad(x, (p, p), mode=layer.padding_mode)
    outs = [(xp[:, :, i * s: i * s + d * (k - 1) + 1: d].unsqueeze(1) * layer.weight[i]).sum(dim=(2, 3))
            for i in range(layer.output_size[1])]
    out = torch.stack(outs, dim=-1)
    return out if layer.bias is None else out + layer.bias


def outputs_and_grads(layer: torch.nn.Module, forward, x: torch.Tensor, seed: int = 1) -> list[torch.Tensor]:
    x = x.detach().clone().requires_grad_(True)
    y = forward(layer, x)
    grad_out = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(seed))
    params = [p for p in layer.parameters()]
    grads = torch.autograd.grad(y, [x, *params], grad_out)
    return [y.detach(), *grads]


def assert_matches_naive(layer: torch.nn.Module, naive, x: torch.Tensor) -> None:
    fast = outputs_and_grads(layer, lambda m, v: m(v), x)
    slow = outputs_and_grads(layer, naive, x)
    for name, a, b in zip(["output", "grad input", "grad weight", "grad bias"], fast, slow, strict=False):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=lambda m, n=name: f"{n}: {m}")


@st.composite
def layer_2d_configs(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    size = []
    for axis in range(2):
        span = dilation[axis] * (kernel[axis] - 1) + 1
        low = max(1, span - 2 * padding[axis], padding[axis] + 1 if mode != "zeros" else 1)
        size.append(draw(st.integers(low, low + 6)))
    return dict(
        in_channels=draw(st.integers(1, 3)), out_channels=draw(st.integers(1, 3)), input_size=tuple(size),
        kernel_size=kernel, stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))), padding=padding,
        dilation=dilation, bias=draw(st.booleans()), padding_mode=mode,
        max_patch_bytes=draw(st.sampled_from([1, 2000, 2**28])),
    )


@settings(max_examples=40, deadline=None)
@given(config=layer_2d_configs(), batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_2d_outputs_and_gradients_equal_naive_loop(config, batch, seed):
    torch.manual_seed(seed)
    layer = LocallyConnected2d(**config, dtype=torch.float64)
    x = torch.randn(batch, config["in_channels"], *config["input_size"], dtype=torch.float64)
    assert_matches_naive(layer, naive_locally_connected2d, x)


@settings(max_examples=25, deadline=None)
@given(kernel=st.integers(1, 5), stride=st.integers(1, 3), padding=st.integers(0, 2), dilation=st.integers(1, 3),
       extra=st.integers(0, 8), mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_1d_outputs_and_gradients_equal_naive_loop(kernel, stride, padding, dilation, extra, mode, bias, seed):
    torch.manual_seed(seed)
    span = dilation * (kernel - 1) + 1
    length = max(1, span - 2 * padding, padding + 1) + extra
    layer = LocallyConnected1d(2, 3, length, kernel, stride, padding, dilation, bias, mode, dtype=torch.float64)
    assert_matches_naive(layer, naive_locally_connected1d, torch.randn(2, 2, length, dtype=torch.float64))


def test_chunking_gives_the_same_result_as_one_chunk():
    torch.manual_seed(0)
    layer = LocallyConnected2d(3, 4, (11, 7), 3, stride=(2, 1), padding=1, dtype=torch.float64)
    x = torch.randn(2, 3, 11, 7, dtype=torch.float64)
    whole = outputs_and_grads(layer, lambda m, v: m(v), x)
    layer.max_patch_bytes = 1  # one output row per chunk
    chunked = outputs_and_grads(layer, lambda m, v: m(v), x)
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def graph_names(tensor: torch.Tensor) -> set[str]:
    names, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None:
            names.add(type(node).__name__)
            stack.extend(next_fn for next_fn, _ in node.next_functions)
    return names


@pytest.mark.parametrize("min_tap_numel", [0, 2**30])  # input-gradient scatter: per-tap adds or unfold_backward
@pytest.mark.parametrize("batch", [5, 10])  # batch-major (<= 8) and batch-last layouts
@pytest.mark.parametrize("stride, padding, max_patch_bytes", [(1, 0, 2**28), ((2, 3), 1, 2**28), (2, (0, 2), 1),
                                                              (1, 1, 3000)])
def test_eager_undilated_layer_uses_the_fused_path_and_matches_naive(stride, padding, max_patch_bytes, batch,
                                                                     min_tap_numel, monkeypatch):
    monkeypatch.setattr(locally_connected_module, "MIN_TAP_NUMEL", min_tap_numel)
    torch.manual_seed(0)
    layer = LocallyConnected2d(3, 4, (13, 11), (3, 4), stride=stride, padding=padding,
                               max_patch_bytes=max_patch_bytes, dtype=torch.float64)
    x = torch.randn(batch, 3, 13, 11, dtype=torch.float64, requires_grad=True)
    assert "_FusedLocationsBackward" in graph_names(layer(x))
    assert_matches_naive(layer, naive_locally_connected2d, x)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), naive_locally_connected2d(layer, x), rtol=0, atol=1e-10)
    # Only one of the two gradients wanted: the other is neither computed nor returned.
    (grad_w,) = torch.autograd.grad(layer(x.detach()).sum(), [layer.weight])
    (expected,) = torch.autograd.grad(naive_locally_connected2d(layer, x).sum(), [layer.weight])
    torch.testing.assert_close(grad_w, expected, rtol=0, atol=1e-10)
    weight = layer.weight.detach()
    out = locally_connected2d(x, weight, None, layer.stride, layer.padding)
    (grad_x,) = torch.autograd.grad(out.sum(), [x])
    layer.weight.requires_grad_(False)
    (expected,) = torch.autograd.grad(naive_locally_connected2d(layer, x).sum(), [x])
    torch.testing.assert_close(grad_x, expected, rtol=0, atol=1e-10)


def test_gradcheck_and_double_backward():
    torch.manual_seed(0)
    layer = LocallyConnected2d(2, 2, (5, 4), (2, 3), stride=(1, 2), padding=1, dtype=torch.float64)
    x = torch.randn(2, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    args = (x, layer.weight, layer.bias)
    fn = lambda x, w, b: locally_connected2d(x, w, b, layer.stride, layer.padding, layer.dilation)  # noqa: E731
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


def test_torch_func_grad_and_vmap_match_autograd():
    torch.manual_seed(0)
    layer = LocallyConnected1d(2, 3, 9, 3, stride=2, dtype=torch.float64)
    x = torch.randn(4, 2, 9, dtype=torch.float64)
    params = dict(layer.named_parameters())

    def loss(p, v):
        return torch.func.functional_call(layer, p, (v,)).square().sum()

    grads = torch.func.grad(loss)(params, x)
    expected = torch.autograd.grad(loss(params, x), list(params.values()))
    for name, g in zip(params, expected, strict=True):
        torch.testing.assert_close(grads[name], g, rtol=0, atol=1e-12)
    per_sample = torch.func.vmap(lambda v: torch.func.functional_call(layer, params, (v.unsqueeze(0),)))(x)
    torch.testing.assert_close(per_sample.squeeze(1), layer(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12), (torch.bfloat16, 3e-2)])
def test_dtypes(dtype, tol):
    torch.manual_seed(0)
    layer = LocallyConnected2d(3, 4, 8, 3, stride=2, padding=1, dtype=dtype)
    x = torch.randn(2, 3, 8, 8, dtype=dtype, requires_grad=True)
    y = layer(x)
    assert y.dtype == dtype
    y.float().sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.dtype == dtype
    reference = naive_locally_connected2d(layer.double(), x.detach().double())
    torch.testing.assert_close(y.double(), reference, rtol=tol, atol=tol)


def test_weight_shape_and_init_match_conv2d_fan_in():
    torch.manual_seed(0)
    layer = LocallyConnected2d(16, 8, (20, 20), (5, 3))
    conv = torch.nn.Conv2d(16, 8, (5, 3))
    assert tuple(layer.weight.shape) == (16, 18, 8, 16, 5, 3)
    assert tuple(layer.bias.shape) == (8, 16, 18)
    bound = 1 / math.sqrt(16 * 5 * 3)
    for ours, theirs in ((layer.weight, conv.weight), (layer.bias, conv.bias)):
        assert ours.abs().max().item() <= bound
        assert theirs.abs().max().item() <= bound
        assert ours.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert layer.weight.abs().max().item() > 0.99 * bound


def test_repr_shows_arguments():
    layer = LocallyConnected2d(3, 8, (10, 12), 3, stride=2, padding=1, dilation=(1, 2), bias=False,
                               padding_mode="reflect")
    assert repr(layer) == (
        "LocallyConnected2d(3, 8, input_size=(10, 12), kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), "
        "dilation=(1, 2), bias=False, padding_mode='reflect', output_size=(5, 5))"
    )
    assert repr(LocallyConnected1d(2, 4, 16, 5)) == (
        "LocallyConnected1d(2, 4, input_size=(16,), kernel_size=(5,), stride=(1,), output_size=(12,))"
    )


def test_input_smaller_than_kernel_is_a_clear_error():
    with pytest.raises(InputError) as info:
        LocallyConnected2d(3, 8, input_size=(4, 10), kernel_size=5)
    assert str(info.value) == (
        "LocallyConnected2d: the input (4x10 plus padding 0x0) is smaller than the dilated kernel "
        "(5x5, dilation 1x1). Use a larger input_size, a smaller kernel_size or more padding."
    )
    with pytest.raises(InputError, match="input .3 plus padding 0. is smaller than the dilated kernel .3, "
                                         "dilation 2"):
        LocallyConnected1d(1, 1, input_size=3, kernel_size=3, dilation=2)


def test_wrong_input_size_at_forward_is_a_clear_error():
    layer = LocallyConnected2d(3, 8, (10, 10), 3)
    with pytest.raises(InputError) as info:
        layer(torch.zeros(2, 3, 12, 10))
    assert str(info.value) == (
        "LocallyConnected2d expects input of shape (N, 3, 10, 10); got (2, 3, 12, 10). The layer was built for "
        "input_size=(10, 10) because its weights are unshared per location; resize the input or build a layer "
        "for this size."
    )
    with pytest.raises(InputError, match=r"expects input of shape \(N, 2, 7\); got \(7,\)"):
        LocallyConnected1d(2, 1, 7, 3)(torch.zeros(7))


@pytest.mark.parametrize("kwargs, message", [
    (dict(padding_mode="same"),
     "padding_mode must be one of 'zeros', 'reflect', 'replicate', 'circular'; got 'same'."),
    (dict(stride=0), "stride must be an int >= 1 or a pair of them; got 0."),
    (dict(kernel_size=(3, 3, 3)), "kernel_size must be an int >= 1 or a pair of them; got (3, 3, 3)."),
    (dict(padding=-1), "padding must be an int >= 0 or a pair of them; got -1."),
    (dict(in_channels=0), "in_channels must be a positive int; got 0."),
    (dict(max_patch_bytes=0), "max_patch_bytes must be a positive int (bytes); got 0."),
    (dict(padding=8, padding_mode="reflect"), "padding_mode='reflect' needs padding <= 7 for input size 8; got "
                                              "padding 8. Use a smaller padding or padding_mode='zeros'."),
    (dict(padding=9, padding_mode="circular"), "padding_mode='circular' needs padding <= 8 for input size 8"),
])
def test_bad_arguments_are_config_errors(kwargs, message):
    args = dict(in_channels=2, out_channels=2, input_size=8, kernel_size=3) | kwargs
    with pytest.raises(ConfigError) as info:
        LocallyConnected2d(**args)
    assert str(info.value).startswith(message)


def test_torch_compile_matches_eager():
    torch.manual_seed(0)
    layer = LocallyConnected2d(2, 3, (6, 5), 3, padding=1)
    x = torch.randn(2, 2, 6, 5, requires_grad=True)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)  # inductor: same graph, 40 s to build
    y = compiled(x)
    torch.testing.assert_close(y, layer(x))
    (grad_x,) = torch.autograd.grad(y.sum(), x)
    (expected,) = torch.autograd.grad(layer(x).sum(), x)
    torch.testing.assert_close(grad_x, expected)


def test_torch_export_matches_eager():
    torch.manual_seed(0)
    layer = LocallyConnected2d(2, 3, (6, 5), 3, stride=2, padding=1).eval()
    x = torch.randn(2, 2, 6, 5)
    exported = torch.export.export(layer, (x,))
    torch.testing.assert_close(exported.module()(x), layer(x))


@pytest.mark.onnx
def test_onnx_export_runs_in_onnxruntime(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    layer = LocallyConnected2d(2, 3, (7, 6), 3, stride=(2, 1), padding=1, dilation=(1, 2)).eval()
    x = torch.randn(2, 2, 7, 6)
    path = tmp_path / "lc.onnx"
    torch.onnx.export(layer, (x,), str(path), dynamo=True)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), layer(x).detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride, padding, dilation, mode", [(1, 0, 1, "zeros"), (2, 1, 2, "zeros"),
                                                             ((1, 2), (2, 1), 1, "circular")])
def test_shared_weights_reduce_to_conv2d(stride, padding, dilation, mode):
    """An independent oracle: with the same filter at every location the layer is nn.Conv2d."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, stride, padding, dilation, padding_mode=mode, dtype=torch.float64)
    layer = LocallyConnected2d(3, 4, (9, 8), 3, stride, padding, dilation, padding_mode=mode, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(conv.weight.expand_as(layer.weight))
        layer.bias.copy_(conv.bias[:, None, None].expand_as(layer.bias))
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    torch.testing.assert_close(layer(x), conv(x), rtol=0, atol=1e-12)


def test_demo_scenario_reports_the_match_and_both_heads(tmp_path, digits):
    from dldebug.demo.context import DemoContext
    from dldebug.demo.locally_connected import scenario

    report = scenario(DemoContext(out_dir=tmp_path, quick=True, data=digits))
    (finding,) = report.findings
    assert finding.check == "locally_connected.matches_definition" and finding.lesson == 5
    assert finding.severity.value == "info" and finding.evidence["max_abs_difference"] <= 1e-10
    heads = report.tables[0].records()
    assert [h["its parameters"] for h in heads] == [8 * 9 + 8, 36 * (8 * 9 + 8)]
    assert all(h["test accuracy"] > 0.5 for h in heads)
