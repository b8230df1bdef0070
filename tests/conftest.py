"""Shared fixtures: the digits data and a digits CNN trained for real (once per session)."""

from __future__ import annotations

import pytest
import torch

from dldebug.demo.digits import DigitsCNN, DigitsData, TrainHistory, load_digits_data, train_digits


@pytest.fixture(scope="session")
def digits() -> DigitsData:
    return load_digits_data()


@pytest.fixture(scope="session")
def trained_digits(digits: DigitsData) -> tuple[DigitsCNN, TrainHistory]:
    """A healthy digits CNN (Adam 1e-3, 8 epochs, ~96% test accuracy). Do not modify: deepcopy it."""
    torch.manual_seed(0)
    model = DigitsCNN()
    history = train_digits(model, digits, epochs=8, seed=0)
    return model.eval(), history
