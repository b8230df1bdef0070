"""The seed-fixed CI sample of the fuzzer: every target, a few seconds each (the full run is
``benchmarks/bench_fuzz.py``). A crash is anything but a correct result or a DldebugError."""

from __future__ import annotations

import importlib.util
import warnings

import pytest
from fuzz_api import API_TARGETS
from fuzz_core import Target, fuzz
from fuzz_files import FILE_TARGETS
from fuzz_known import KNOWN, unknown_crashes
from fuzz_logs import LOG_TARGETS

_NEEDS = {"read_log.tensorboard": "tensorboard", "load_model.onnx": "onnxruntime",
          "load_compare_model.keras": "keras"}


def _params(targets: tuple[Target, ...]) -> list[object]:
    marks = {"load_compare_model.keras": [pytest.mark.keras], "load_model.onnx": [pytest.mark.onnx]}
    return [pytest.param(t, id=t.name, marks=marks.get(t.name, [])) for t in targets]


def _sample(target: Target) -> None:
    module = _NEEDS.get(target.name)
    if module is not None and importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # damaged files make torch/numpy warn; the outcome is what counts
        tally = fuzz(target, target.ci_examples)
    assert tally.tried == target.ci_examples
    unknown = unknown_crashes(target.name, list(tally.crashes))
    assert not unknown, tally.summary()
    if tally.crashes:
        entries = sorted({KNOWN[target.name][s.rsplit(":", 1)[0]] for s in tally.crashes})
        pytest.xfail(f"known crashes in another module (docs/reliability.md) {', '.join(entries)}")


@pytest.mark.parametrize("target", _params(LOG_TARGETS))
def test_log_readers(target: Target) -> None:
    _sample(target)


@pytest.mark.parametrize("target", _params(FILE_TARGETS))
def test_model_and_tensor_files(target: Target) -> None:
    _sample(target)


@pytest.mark.parametrize("target", _params(API_TARGETS))
def test_entry_points(target: Target) -> None:
    _sample(target)
