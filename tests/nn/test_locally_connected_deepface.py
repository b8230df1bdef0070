"""DeepFace (lesson 5's table) runs forward and backward on a 152x152 RGB face."""

from __future__ import annotations

import pytest
import torch

from dldebug.errors import ConfigError, InputError
from dldebug.nn import DeepFace, LocallyConnected2d


def test_deepface_follows_the_lesson_table_trains_and_checks_its_input():
    torch.manual_seed(0)
    model = DeepFace(num_classes=4030)
    shapes = {}
    for name, block in model.named_children():
        block.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
    x = torch.randn(1, 3, 152, 152)
    logits = model(x)
    assert shapes == {"c1": (32, 142, 142), "m2": (32, 71, 71), "c3": (16, 63, 63), "l4": (16, 55, 55),
                      "l5": (16, 25, 25), "l6": (16, 21, 21), "f7": (4096,), "f8": (4030,)}
    locals_ = [m for m in model.modules() if isinstance(m, LocallyConnected2d)]
    assert [tuple(m.kernel_size) for m in locals_] == [(9, 9), (7, 7), (5, 5)]
    assert locals_[0].weight.numel() == 55 * 55 * 16 * 16 * 9 * 9  # ~63 M unshared weights in L4
    assert 118_000_000 < sum(p.numel() for p in model.parameters()) < 121_000_000
    torch.nn.functional.cross_entropy(logits, torch.tensor([7])).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert locals_[2].weight.grad.abs().sum() > 0
    with pytest.raises(InputError, match=r"DeepFace expects faces of shape \(N, 3, 152, 152\); got \(1, 3, 160, 160\)"):
        model(torch.zeros(1, 3, 160, 160))


def test_deepface_rejects_a_bad_class_count():
    with pytest.raises(ConfigError, match="num_classes must be a positive int; got 0"):
        DeepFace(num_classes=0)
