"""probe_equivariance against exact oracles: circular shifts of circular-padded, stride-1 nets."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from dldebug import InputError, Report, probe_equivariance


def circular_conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, padding_mode="circular")


def _d4_symmetric(conv: nn.Conv2d) -> nn.Conv2d:
    """Average each kernel over the 8 flips/rotations of the square: the conv commutes with them all."""
    with torch.no_grad():
        w = conv.weight
        variants = [torch.rot90(v, k, dims=(-2, -1)) for v in (w, w.flip(-1)) for k in range(4)]
        conv.weight.copy_(torch.stack(variants).mean(0))
    return conv


def test_circular_stride1_net_is_equivariant_to_float_precision(nets: Any, images: torch.Tensor) -> None:
    net = nets.circular_dense_net()
    report = probe_equivariance(net, images, transforms=("translate",), shifts=(1, 2, 3, 4))
    assert not report.has("equivariance.broken")
    table = report.table("equivariance.layers")
    for label in ("translate 1", "translate 2", "translate 3", "translate 4"):
        assert max(table.column(label)) < 1e-6
    assert set(table.column("verdict")) == {"ok"}


def test_output_error_matches_a_direct_computation(nets: Any, images: torch.Tensor) -> None:
    net = nets.pooled_dense_net().eval()
    report = probe_equivariance(net, images, transforms=("translate",), shifts=(2,))
    with torch.no_grad():
        moved, expected = net(torch.roll(images, (2, 2), (2, 3))), torch.roll(net(images), (1, 1), (2, 3))
    oracle = float(torch.linalg.vector_norm(moved - expected) / torch.linalg.vector_norm(expected))
    output_row = report.table("equivariance.layers").records()[-1]
    assert output_row["layer"] == "(output)"
    assert output_row["translate 2"] == pytest.approx(oracle, abs=1e-6)


def test_stride2_max_pool_breaks_it_at_exactly_that_layer(nets: Any, images: torch.Tensor) -> None:
    report = probe_equivariance(nets.pooled_dense_net(), images, transforms=("translate",))
    finding = report.get("equivariance.broken")
    assert finding is not None and finding.lesson == 1
    assert finding.evidence["layer"] == "4"
    assert finding.evidence["type"] == "MaxPool2d (stride 2)"
    assert finding.evidence["reason"] == "1/2 px"
    assert "pooling" in finding.message
    rows = report.table("equivariance.layers").records()
    assert [r["verdict"] for r in rows[:4]] == ["ok"] * 4
    assert rows[4]["translate 1"] == "cannot (1/2 px)"
    # an even shift lands on the pooled grid: the pool itself stays equivariant to it
    assert rows[4]["translate 2"] < 1e-6 and rows[4]["translate 4"] < 1e-6


def test_strided_conv_is_equivariant_to_shifts_on_its_grid(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(circular_conv(1, 4), nn.ReLU(), circular_conv(4, 4, stride=2), nn.ReLU())
    assert not probe_equivariance(net, images, transforms=("translate",), shifts=(2, 4)).has("equivariance.")
    broken = probe_equivariance(net, images, transforms=("translate",), shifts=(1,)).get("equivariance.broken")
    assert broken is not None and broken.evidence["layer"] == "2"
    assert "strided convolution" in broken.message


def test_gap_net_is_invariant_to_circular_shifts(nets: Any, images: torch.Tensor) -> None:
    report = probe_equivariance(nets.gap_classifier(), images, transforms=("translate",), task="classification")
    assert not report.has("invariance.broken")
    for row in report.table("equivariance.output").records():
        assert row["invariance error"] < 1e-6
        assert row["top-1 change rate"] == 0.0


def test_flatten_classifier_is_not_invariant_and_top1_rate_matches(nets: Any, images: torch.Tensor) -> None:
    net = nets.flatten_classifier().eval()
    report = probe_equivariance(net, images, transforms=("translate",), shifts=(1, 3), task="classification")
    finding = report.get("invariance.broken")
    assert finding is not None and finding.severity.value == "warning"
    assert finding.evidence["first_break_layer"] == "0"  # zero padding, before the pool
    with torch.no_grad():
        base = net(images).argmax(1)
        oracle = {s: float((net(torch.roll(images, (s, s), (2, 3))).argmax(1) != base).float().mean())
                  for s in (1, 3)}
    rates = {r["transform"]: r["top-1 change rate"] for r in report.table("equivariance.output").records()}
    assert rates == {"translate 1": oracle[1], "translate 3": oracle[3]}


@pytest.mark.parametrize(("net", "layer", "cause"), [
    (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()), "0", "padding at the border"),
    (nn.Sequential(circular_conv(1, 4), nn.Flatten(), nn.Linear(4 * 16 * 16, 8)), "1", "flatten + linear"),
    (nn.Sequential(circular_conv(1, 4), nn.AdaptiveAvgPool2d(1)), "1", "global pooling"),
])
def test_dense_cause_is_named(images: torch.Tensor, net: nn.Module, layer: str, cause: str) -> None:
    finding = probe_equivariance(net, images, transforms=("translate",)).get("equivariance.broken")
    assert finding is not None and finding.evidence["layer"] == layer
    assert cause in finding.message


def test_d4_symmetric_kernels_are_equivariant_to_flips_and_rotations(nets: Any, images: torch.Tensor) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(_d4_symmetric(circular_conv(1, 4)), nn.ReLU(), _d4_symmetric(circular_conv(4, 2)))
    assert len(probe_equivariance(net, images)) == 0
    plain = probe_equivariance(nets.circular_dense_net(), images).filter(check="equivariance.broken")
    assert {f.evidence["transform"] for f in plain} == {"hflip", "rot90"}
    assert all(f.severity.value == "info" for f in plain)


def test_costs_one_pass_per_probe_plus_one(nets: Any, images: torch.Tensor) -> None:
    net, calls = nets.circular_dense_net(), []
    net[0].register_forward_pre_hook(lambda *_: calls.append(1))  # the first layer runs once per pass
    report = probe_equivariance(net, images, shifts=(1, 2, 4))
    assert len(calls) == report.meta["forward_passes"] == 3 + 2 + 1 <= 3 * 3 + 1


def test_model_mode_restored_and_report_round_trips(images: torch.Tensor) -> None:
    net = nn.Sequential(circular_conv(1, 4), nn.Dropout(0.5), nn.BatchNorm2d(4)).train()
    report = probe_equivariance(net, images, transforms=("translate",))
    assert all(m.training for m in net.modules())
    assert not report.has("equivariance.broken")  # eval mode: dropout off, batch-norm running stats
    assert Report.from_json(report.to_json()) == report


def test_sequences_and_non_square_inputs_skip_rot90() -> None:
    torch.manual_seed(0)
    seq = nn.Conv1d(2, 3, 3, padding=1, padding_mode="circular")
    report = probe_equivariance(seq, torch.randn(2, 2, 12))
    assert "rot90" in report.meta["skipped"] and "rot90" not in report.meta["probes"]
    rect = probe_equivariance(circular_conv(1, 2), torch.randn(2, 1, 8, 12), transforms=("rot90", "translate"))
    assert rect.meta["probes"] == "translate 1, translate 2, translate 4"


@pytest.mark.parametrize(("x", "kwargs", "message"), [
    (torch.randn(4, 16), {}, "probe_equivariance needs a floating batch (N, C, H, W) or (N, C, L); "
                             "got Tensor of shape (4, 16) (float32)."),
    ({"ids": torch.zeros(2, 5, dtype=torch.long)}, {}, "probe_equivariance needs a floating batch (N, C, H, W) or "
                                                       "(N, C, L); got dict with {ids: Tensor(2, 5)}."),
    (torch.randn(2, 1, 8, 8), {"transforms": ("shear",)}, "Unknown transform(s) ['shear']; choose from "
                                                          "['translate', 'hflip', 'rot90']."),
    (torch.randn(2, 1, 8, 8), {"shifts": (0,)}, "shifts must be positive whole pixel counts"),
    (torch.randn(2, 1, 8, 8), {"task": "segmentation"}, "task must be 'dense' or 'classification'"),
])
def test_bad_arguments_raise_input_error(nets: Any, x: torch.Tensor, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError) as info:
        probe_equivariance(nets.circular_dense_net(), x, **kwargs)
    assert str(info.value).startswith(message)


class StructuredOut(nn.Module):
    """Keyword input, a dict output: a pooled score first, the dense map under "mask"."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = circular_conv(1, 2)

    def forward(self, image: torch.Tensor, scale: float = 1.0) -> dict[str, torch.Tensor]:
        mask = self.conv(image) * scale
        return {"score": mask.mean((2, 3)), "mask": mask}


def test_dict_inputs_and_output_select_what_is_probed(images: torch.Tensor) -> None:
    report = probe_equivariance(StructuredOut(), {"scale": 2.0, "image": images}, output="mask",
                                transforms=("translate",))
    assert report.meta["input"] == "image" and report.meta["traced"] == "forward hooks"
    assert not report.findings  # the map under "mask" moves with the image
    assert report.table("equivariance.layers").records()[-1]["shape"] == "2x16x16"
    pooled = probe_equivariance(StructuredOut(), (images,), output="score", transforms=("translate",))
    assert pooled.meta["input"] == "inputs[0]" and pooled.meta["traced"] == "torch.fx"
    finding = pooled.get("equivariance.broken")  # a dense task on a pooled output: the mean() breaks it
    assert finding is not None and finding.evidence["layer"] == "mean"
    assert "mean() in forward() leaves no spatial extent (global pooling)" in finding.message
    with pytest.raises(InputError, match="output='logits' is not in the model's output"):
        probe_equivariance(StructuredOut(), {"image": images}, output="logits")


@pytest.mark.parametrize("size", [15, 16])
def test_every_circular_shift_on_odd_and_even_maps(nets: Any, size: int) -> None:
    x = torch.randn(2, 1, size, size, generator=torch.Generator().manual_seed(size))
    report = probe_equivariance(nets.circular_dense_net(), x, transforms=("translate",), shifts=tuple(range(1, size)))
    assert report.meta["forward_passes"] == size
    assert not report.findings
    rows = report.table("equivariance.layers").records()
    assert max(v for row in rows for k, v in row.items() if k.startswith("translate")) < 1e-6


class FunctionalPool(nn.Module):
    """Down-samples with F.max_pool2d inside forward(): no module there. ``untraceable`` adds a
    data-dependent branch, so torch.fx cannot trace it and the probe falls back to forward hooks."""

    def __init__(self, untraceable: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular")
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 2, 3, padding=1, padding_mode="circular")
        self.untraceable = untraceable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv1(x))
        if self.untraceable and bool(h.sum() > -1e9):
            h = h * 1.0
        return self.conv2(nn.functional.max_pool2d(h, 2))


def test_functional_pooling_is_named_in_the_fx_graph(images: torch.Tensor) -> None:
    report = probe_equivariance(FunctionalPool(), images, transforms=("translate",))
    assert report.meta["traced"] == "torch.fx"
    finding = report.get("equivariance.broken")
    assert finding is not None and finding.evidence["layer"] == "max_pool2d"
    assert finding.evidence["type"] == "max_pool2d()" and "pooling (max_pool2d() in forward())" in finding.message
    assert [r["layer"] for r in report.table("equivariance.layers").records()] == [
        "conv1", "act", "max_pool2d", "conv2", "(output)"]


def test_untraceable_models_fall_back_to_hooks(images: torch.Tensor) -> None:
    report = probe_equivariance(FunctionalPool(untraceable=True), images, transforms=("translate",))
    assert report.meta["traced"] == "forward hooks"
    finding = report.get("equivariance.broken")
    assert finding is not None and finding.evidence["layer"] == "conv2"
    assert "down-sampling outside any module before this layer" in finding.message
    assert "padding" not in finding.message


def test_explicit_circular_pad_layers_are_compared_after_the_crop(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.CircularPad2d(1), nn.Conv2d(1, 4, 3), nn.ReLU(), nn.CircularPad2d(2), nn.Conv2d(4, 2, 5))
    report = probe_equivariance(net, images, transforms=("translate",))
    assert not report.findings
    rows = report.table("equivariance.layers").records()
    assert rows[0]["translate 1"] == "n/a (padded map)" and rows[0]["verdict"] == "ok"
    assert max(r["translate 1"] for r in rows[1:] if not isinstance(r["translate 1"], str)) < 1e-6


# ---- the cause of a break, checked against oracles -------------------------------------------------------


def test_zero_padding_is_told_from_stride_by_the_circular_padding_oracle() -> None:
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    zero = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU())
    on_grid = probe_equivariance(zero, x, transforms=("translate",), shifts=(2,)).get("equivariance.broken")
    assert on_grid is not None and on_grid.evidence["layer"] == "0"
    assert "zero padding at the border" in on_grid.message and "strided" not in on_grid.message
    assert on_grid.evidence["circular_padding_error"] < 1e-6 < 1e-3 < on_grid.evidence["error"]
    calls: list[int] = []
    zero[0].register_forward_pre_hook(lambda *_: calls.append(1))  # deep copies carry the hook
    report = probe_equivariance(zero, x, transforms=("translate",), shifts=(2,))
    assert len(calls) == report.meta["forward_passes"] == 2  # baseline + probe: the oracle re-runs that conv alone
    off_grid = probe_equivariance(zero, x, transforms=("translate",), shifts=(1,)).get("equivariance.broken")
    assert off_grid is not None and "strided convolution (stride 2)" in off_grid.message
    circular = copy.deepcopy(zero)
    circular[0].padding_mode = "circular"  # the oracle's own variant, probed directly: exact
    assert not probe_equivariance(circular, x, transforms=("translate",), shifts=(2,)).findings


class FlipTail(nn.Module):
    """Zero padding the circular oracle cannot fix: a reflection of the map in forward()."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if bool(y.sum() > -1e9):  # untraceable: hooks only
            y = y + y.flip(-1)
        return y


class RampThenConv(nn.Module):
    """A position-dependent gain applied in forward() (no module sees it), then a zero-padded conv."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > -1e9):  # untraceable: hooks only, so the gain is in no watched layer
            x = x * torch.linspace(0.5, 2.0, x.shape[-1])
        return self.conv(x)


def test_the_one_layer_oracle_falls_back_to_the_whole_model_when_its_input_was_already_broken(
        images: torch.Tensor) -> None:
    model, calls = RampThenConv(), []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    report = probe_equivariance(model, images, transforms=("translate",), shifts=(1,))
    finding = report.get("equivariance.broken")
    assert finding is not None and finding.evidence["layer"] == "conv"
    assert "zero padding" not in finding.message  # circular padding does not make it exact: the gain breaks it
    assert finding.evidence["circular_padding_error"] > 1e-3
    assert len(calls) == report.meta["forward_passes"] == 2 + 2  # the conv's input did not shift back: whole model


def test_a_padded_conv_is_only_blamed_when_the_oracle_confirms_it(images: torch.Tensor) -> None:
    report = probe_equivariance(FlipTail(), images, transforms=("translate",), shifts=(1,))
    finding = report.get("equivariance.broken")
    assert finding is not None and finding.evidence["layer"] == "conv"  # zero padding there is real ...
    assert finding.evidence["circular_padding_error"] < 1e-6  # ... and the oracle confirms it
    rows = {r["layer"]: r for r in report.table("equivariance.layers").records()}
    assert rows["(output)"]["translate 1"] > rows["conv"]["translate 1"]  # the flip adds its own break


class PatchModel(nn.Module):
    """A ViT-like stem: 4x4 patches, a class token, optional position embeddings, per-token layers."""

    def __init__(self, positions: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.patches = nn.Conv2d(1, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.position_embeddings = nn.Parameter(torch.randn(1, 17, 8) * (1.0 if positions else 0.0))
        self.dropout = nn.Dropout(0.1)
        self.mixer = nn.MultiheadAttention(8, 2, batch_first=True)
        self.norm = nn.LayerNorm(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1) + self.position_embeddings
        tokens = self.dropout(tokens)
        if bool(tokens.sum() > -1e9):  # untraceable: the probe falls back to forward hooks
            tokens = tokens + self.mixer(tokens, tokens, tokens, need_weights=False)[0]
        return self.norm(tokens)


def test_token_sequences_are_judged_as_a_grid_with_the_class_token_aside(images: torch.Tensor) -> None:
    report = probe_equivariance(PatchModel(positions=False), images, transforms=("translate", "rot90"),
                                shifts=(4, 8))
    assert report.meta["traced"] == "forward hooks"
    breaks = {f.evidence["transform"]: f for f in report.filter(check="equivariance.broken")}
    assert "translate" not in breaks  # attention and layer norm commute with moving patches ...
    assert breaks["rot90"].evidence["layer"] == "patches"  # ... rotating them needs rotation-symmetric filters
    assert "rotation-symmetric" in breaks["rot90"].message
    rows = {r["layer"]: r for r in report.table("equivariance.layers").records()}
    assert rows["dropout"]["shape"] == "17x8" and rows["(output)"]["translate 4"] < 1e-5
    with torch.no_grad():  # the oracle: move the 4x4 grid of patch tokens by one, the class token stays
        model = PatchModel(positions=False).eval()
        base, moved = model(images), model(torch.roll(images, (4, 4), (2, 3)))
        grid = torch.roll(base[:, 1:].reshape(len(images), 4, 4, 8), (1, 1), (1, 2)).reshape(len(images), 16, 8)
        expected = torch.cat([base[:, :1], grid], 1)
    assert rows["(output)"]["translate 4"] == pytest.approx(float((moved - expected).norm() / expected.norm()),
                                                            abs=1e-6)


def test_position_embeddings_are_blamed_not_the_dropout(images: torch.Tensor) -> None:
    report = probe_equivariance(PatchModel(positions=True), images, transforms=("translate",), shifts=(4,))
    finding = report.get("equivariance.broken")
    assert finding is not None and finding.evidence["seen_at"] == "dropout"
    assert finding.evidence["error_without_position_embeddings"] < 1e-5
    assert "position embeddings (position_embeddings)" in finding.message
    assert "global pooling" not in finding.message and "Dropout is" not in finding.message
    shifted_by_pixels = probe_equivariance(PatchModel(positions=True), images, transforms=("translate",))
    first = shifted_by_pixels.get("equivariance.broken")
    assert first is not None and first.evidence["layer"] == "patches"
    assert "patch embedding (a stride-4 convolution" in first.message and first.evidence["reason"] == "1/4 px"


class ClassTokenHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = PatchModel(positions=False)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stem(x)[:, 0])


def test_a_class_token_head_is_not_called_global_pooling(images: torch.Tensor) -> None:
    finding = probe_equivariance(ClassTokenHead(), images, transforms=("translate",), shifts=(4,)).get(
        "equivariance.broken")
    assert finding is not None and finding.evidence["layer"] == "head"
    assert "token selection (such as the class token x[:, 0])" in finding.message
    assert "global pooling" not in finding.message


def test_tokens_that_form_no_grid_are_skipped_with_the_reason(images: torch.Tensor) -> None:
    class Odd(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.relu(x.flatten(2).transpose(1, 2)[:, :7])  # 7 tokens of a 16x16 image

    rows = probe_equivariance(Odd(), images, transforms=("translate",)).table("equivariance.layers").records()
    assert rows[-1]["translate 1"] == "n/a (7 tokens are no grid of the 16x16 input)"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"shifts": (0,)}, "shifts must be positive whole pixel counts"),
    ({"shifts": "2"}, "shifts must be positive whole pixel counts"),
    ({"shifts": (True,)}, "shifts must be positive whole pixel counts"),
    ({"transforms": 1}, "transforms must be a tuple of"),
    ({"transforms": ("shear",)}, r"Unknown transform\(s\) \[.shear.\]"),
    ({"transforms": ()}, "transforms must be a tuple of"),
    ({"tolerance": None}, "tolerance must be a finite number > 0; got None"),
    ({"tolerance": float("nan")}, "tolerance must be a finite number > 0"),
    ({"tolerance": -1.0}, "tolerance must be a finite number > 0"),
])
def test_bad_probe_arguments_are_one_clear_error(kwargs: dict, message: str) -> None:
    conv = torch.nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular")
    with pytest.raises(InputError, match=message):
        probe_equivariance(conv, torch.randn(1, 1, 8, 8), **kwargs)


def test_a_bare_shift_or_transform_means_that_one() -> None:
    conv = torch.nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular")
    report = probe_equivariance(conv, torch.randn(1, 1, 8, 8), shifts=2, transforms="translate")
    assert not report.filter(min_severity="warning")
    assert report.meta["probes"] == "translate 2" and report.meta["forward_passes"] == 2
