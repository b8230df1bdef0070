"""predict_logits and check_label_alignment read logits out of tuple, dict and dataclass outputs (output=)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from dldebug.errors import InputError
from dldebug.labels import check_label_alignment, predict_logits


@dataclass
class Out:
    features: torch.Tensor
    logits: torch.Tensor


class Wrapped(nn.Module):
    """The trained digits CNN returning its logits inside a structure of the given kind."""

    def __init__(self, model: nn.Module, kind: str) -> None:
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, x: torch.Tensor) -> object:
        logits = self.model(x)
        features = torch.zeros(len(x), 3)
        if self.kind == "tuple":
            return features, logits
        if self.kind == "dict":
            return {"features": features, "logits": logits}
        return Out(features, logits)


@pytest.mark.parametrize(("kind", "output"), [("dict", None), ("dataclass", None), ("tuple", 1),
                                              ("dict", "logits"), ("tuple", lambda out: out[1])])
def test_structured_outputs_give_the_plain_logits(trained_digits, folder_run: Any, kind: str,
                                                  output: object) -> None:
    model, _ = trained_digits
    files = folder_run.folder.files[:40]
    logits = predict_logits(Wrapped(model, kind), files, grayscale=True, mean=folder_run.mean,
                            std=folder_run.std, output=output)
    np.testing.assert_array_equal(logits, folder_run.logits[:40])


def test_check_label_alignment_reads_a_dict_of_outputs(folder_run: Any) -> None:
    logits = torch.from_numpy(folder_run.logits)
    plain = check_label_alignment(logits, folder_run.folder.labels)
    structured = check_label_alignment({"loss": torch.tensor(0.0), "logits": logits}, folder_run.folder.labels)
    assert structured.mapping == plain.mapping and structured.report.has("labels.permuted")
    picked = check_label_alignment((torch.zeros(len(logits)), logits), folder_run.folder.labels, output=1)
    assert picked.mapping == plain.mapping
    with pytest.raises(InputError) as info:
        check_label_alignment({"scores": logits}, folder_run.folder.labels, output="logits")
    assert "check_label_alignment: output='logits' is not in the model's output" in str(info.value)
