"""Synthetic curve families shared by the curve tests (fixed seeds)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest


def healthy(n: int = 1000, noise: float = 0.05, scale: float = 1.0, seed: int = 0, tau: float = 0.15) -> np.ndarray:
    """Exponential decay 2.3 -> 0.1 with multiplicative-plus-additive noise, times ``scale``."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    clean = 0.1 + 2.2 * np.exp(-t / (tau * n))
    return scale * np.abs(clean * (1 + noise * rng.standard_normal(n)) + 0.2 * noise * rng.standard_normal(n))


def plateau_then_fall(n: int = 1000, onset: float = 0.3, noise: float = 0.02, seed: int = 0,
                      tau: float = 0.1) -> tuple[np.ndarray, int]:
    """Flat at 2.3 until ``onset * n``, then an exponential fall toward 0.2; returns (curve, onset index)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    start = int(onset * n)
    clean = np.where(t < start, 2.3, 0.2 + 2.1 * np.exp(-(t - start) / (tau * n)))
    return clean + noise * rng.standard_normal(n), start


def flat(n: int = 1000, level: float = 2.3, noise: float = 0.02, seed: int = 0) -> np.ndarray:
    return level + noise * np.random.default_rng(seed).standard_normal(n)


def diverging(n: int = 1000, noise: float = 0.05, seed: int = 0, onset: float = 0.5) -> tuple[np.ndarray, int]:
    """Falls like a healthy run, then rises exponentially from ``onset * n``; returns (curve, onset)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    start = int(onset * n)
    clean = 0.3 + 2.0 * np.exp(-t / (0.05 * n)) + np.where(t < start, 0.0, np.expm1((t - start) / (0.1 * n)))
    return clean * (1 + noise * rng.standard_normal(n)), start


def oscillating(n: int = 1000, periods: float = 8, amplitude: float = 0.5, noise: float = 0.05,
                seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 1.2 + amplitude * np.sin(2 * np.pi * periods * t / n) + noise * rng.standard_normal(n)


def collapsed(n: int = 1000, spikes: int = 6, seed: int = 0) -> np.ndarray:
    """Falls from 2.3 to ~1e-4 (log-normal noise) with ``spikes`` short spikes to ~0.5 in the second half."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    clean = np.exp(np.log(2.3) + (np.log(1e-4) - np.log(2.3)) * np.minimum(t / (0.3 * n), 1.0))
    curve = clean * np.exp(0.3 * rng.standard_normal(n))
    where = rng.choice(np.arange(n // 2, n - 2), size=spikes, replace=False)
    curve[where] = 0.5 * np.exp(0.3 * rng.standard_normal(spikes))
    return curve


def with_spikes(curve: np.ndarray, count: int = 5, height: float = 10.0, seed: int = 1) -> np.ndarray:
    """The curve with ``count`` single-point spikes ``height`` times its value."""
    rng = np.random.default_rng(seed)
    out = curve.copy()
    where = rng.choice(np.arange(5, len(curve) - 5), size=count, replace=False)
    out[where] *= height
    return out


@pytest.fixture(scope="session")
def families() -> SimpleNamespace:
    """The synthetic curve families above, as one namespace (test modules cannot import conftest)."""
    return SimpleNamespace(healthy=healthy, plateau_then_fall=plateau_then_fall, flat=flat, diverging=diverging,
                           oscillating=oscillating, collapsed=collapsed, with_spikes=with_spikes)


_WRITE_EVENTS = """
import sys, types
# Keep TensorBoard on its TensorFlow-free I/O path: importing TensorFlow costs seconds.
sys.modules["tensorboard.compat.notf"] = types.ModuleType("tensorboard.compat.notf")
import json
from torch.utils.tensorboard import SummaryWriter
spec = json.loads(sys.argv[1])
for run, scalars in spec.items():
    writer = SummaryWriter(run)
    for tag, points in scalars.items():
        for step, value in points:  # "new:" tags are written as TF2-style scalar tensors
            writer.add_scalar(tag.removeprefix("new:"), value, step, new_style=tag.startswith("new:"))
    writer.close()
"""


def write_event_files(spec: dict[str, dict[str, list[tuple[int, float]]]]) -> None:
    """Write real TensorBoard event files with torch's SummaryWriter: {run dir: {tag: [(step, value)]}}."""
    import json
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", _WRITE_EVENTS, json.dumps(spec)], check=True, timeout=300)


@pytest.fixture(scope="session")
def plateau_curve() -> tuple[np.ndarray, np.ndarray, int]:
    """(steps logged every 10 steps, loss values, true onset step) of a plateau-then-fall run."""
    values, start = plateau_then_fall(400, 0.3, 0.02, seed=7)
    return 10 * np.arange(len(values)), values, 10 * start


@pytest.fixture(scope="session")
def tensorboard_logs(tmp_path_factory: pytest.TempPathFactory, plateau_curve) -> SimpleNamespace:
    """Real event files: one run with train/loss + accuracy, and a two-run directory."""
    steps, values, _ = plateau_curve
    root = tmp_path_factory.mktemp("tb")
    loss = [(int(s), float(v)) for s, v in zip(steps, values, strict=True)]
    acc = [(int(s), float(1 - v / 2.5)) for s, v in zip(steps, values, strict=True)]
    spec = {str(root / "single"): {"train/loss": loss, "accuracy": acc}, str(root / "tensors"): {"new:loss": loss},
            str(root / "multi" / "a"): {"loss": loss}, str(root / "multi" / "b"): {"loss": loss[:50]}}
    write_event_files(spec)
    return SimpleNamespace(single=root / "single", multi=root / "multi", tensors=root / "tensors")
