"""blank_last_to_first / blank_first_to_last: the loss is unchanged by the conversion (torch and TF1 oracles)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dldebug import check_ctc
from dldebug.ctc import blank_first_to_last, blank_last_to_first
from dldebug.errors import InputError


def _blank_last_batch(seed: int = 0):
    """A TF1-style batch: C = 6 classes, the blank is class 5, labels 0..4 (with 0 as a real label)."""
    g = torch.Generator().manual_seed(seed)
    T, N, C, S = 15, 4, 6, 4
    logits = torch.randn(T, N, C, generator=g, dtype=torch.float64)
    targets = torch.randint(0, C - 1, (N, S), generator=g)
    target_lengths = torch.tensor([4, 3, 2, 1])
    input_lengths = torch.tensor([15, 14, 10, 9])
    return logits, targets, input_lengths, target_lengths


def test_conversion_preserves_the_loss_torch_oracle() -> None:
    logits, targets, il, tl = _blank_last_batch()
    lp = logits.log_softmax(-1)
    blank_last = F.ctc_loss(lp, targets, il, tl, blank=5, reduction="none")
    lp0, targets0 = blank_last_to_first(lp, targets)
    blank_first = F.ctc_loss(lp0, targets0, il, tl, blank=0, reduction="none")
    torch.testing.assert_close(blank_first, blank_last, rtol=0, atol=1e-12)
    back_lp, back_targets = blank_first_to_last(lp0, targets0)
    assert torch.equal(back_lp, lp) and torch.equal(back_targets, targets)


def test_unconverted_tf1_labels_trip_the_checker() -> None:
    logits, targets, il, tl = _blank_last_batch()
    targets[0, 0] = 0  # label 0 is a real class in TF1, the blank in PyTorch
    report = check_ctc(logits.log_softmax(-1), targets, il, tl, blank=0)
    assert report.has("ctc.blank_in_targets")
    lp0, targets0 = blank_last_to_first(logits.log_softmax(-1), targets)
    assert not check_ctc(lp0, targets0, il, tl).has("ctc.blank_in_targets")


def test_converts_an_output_layer_and_non_last_class_dims() -> None:
    layer = torch.nn.Linear(3, 6)
    x = torch.randn(2, 3)
    weight, _ = blank_last_to_first(layer.weight.detach(), class_dim=0)
    bias, _ = blank_last_to_first(layer.bias.detach(), class_dim=0)
    expected, _ = blank_last_to_first(layer(x).detach())
    torch.testing.assert_close(x @ weight.T + bias, expected)
    assert blank_first_to_last(None, None) == (None, None)


def test_rejects_float_targets() -> None:
    with pytest.raises(InputError, match=re.escape("targets must hold integer labels; got a torch.float32 tensor.")):
        blank_last_to_first(targets=torch.tensor([1.0]))


@pytest.mark.keras
def test_conversion_matches_tensorflow_v1_ctc_loss() -> None:
    """TF1's ctc_loss (blank = last class) on the original == torch blank=0 on the converted batch."""
    tf = pytest.importorskip("tensorflow")
    logits, targets, il, tl = _blank_last_batch(seed=1)
    indices = [[i, k] for i in range(len(tl)) for k in range(int(tl[i]))]
    values = [int(targets[i, k]) for i, k in indices]
    labels = tf.SparseTensor(indices, tf.constant(values, tf.int32), [len(tl), targets.shape[1]])
    tf_loss = tf.compat.v1.nn.ctc_loss(labels, tf.constant(logits.numpy()), il.numpy().astype(np.int32),
                                       time_major=True).numpy()
    lp0, targets0 = blank_last_to_first(logits.log_softmax(-1), targets)
    torch_loss = F.ctc_loss(lp0, targets0, il, tl, blank=0, reduction="none").numpy()
    np.testing.assert_allclose(torch_loss, tf_loss, rtol=1e-5)
