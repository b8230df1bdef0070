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


def early_blowup(n: int = 1000, factor: float = 1e3, position: float = 0.02, after: str = "settle",
                 noise: float = 0.05, seed: int = 0, scale: float = 1.0) -> tuple[np.ndarray, int]:
    """A run whose loss jumps ``factor`` x above its start at ``position`` of the run; returns (curve, jump index).

    Before the jump the loss falls like a healthy run from 2.3 (x ``scale``). It rises to the peak
    over 1-3 steps, then ``after``:

    * ``"settle"``: falls within 1-5% of the run to a level 2x-min(factor/2, 100)x the start and stays there;
    * ``"decay"``: falls geometrically (a straight line in log scale) from the peak to 1-3x the start,
      reached at the end of the run (it falls only slowly: the rest of the run is spent getting back);
    * ``"oscillate"``: swings 1.5-3x up and down (period 5-20% of the run) around a level of
      2x-min(factor/2, 100)x the start.

    Noise is multiplicative (``noise`` x a standard normal), like :func:`healthy`.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    jump = max(1, round(position * n))
    clean = 0.1 + 2.2 * np.exp(-t / (0.15 * n))
    start = clean[jump - 1]
    rise = int(rng.integers(1, 4))
    peak_at = min(jump + rise - 1, n - 1)
    peak = factor * start
    log_clean = np.log(clean)
    log_clean[jump:peak_at + 1] = np.log(start) + np.log(factor) * np.arange(1, peak_at - jump + 2) / (rise or 1)
    rest = t[peak_at:] - peak_at
    high = float(10 ** rng.uniform(np.log10(2.0), np.log10(max(2.0, min(factor / 2, 100.0)))))
    if after == "decay":
        end = start * float(rng.uniform(1.0, 3.0))
        log_clean[peak_at:] = np.log(peak) + (np.log(end) - np.log(peak)) * rest / max(rest[-1], 1.0)
    else:
        fall = max(1.0, float(rng.uniform(0.01, 0.05)) * n)
        settle = np.log(start * high) + (np.log(peak) - np.log(start * high)) * np.exp(-rest / (fall / 4))
        if after == "oscillate":
            period = float(rng.uniform(0.05, 0.2)) * n
            swing = np.log(float(rng.uniform(1.5, 3.0)))
            settle = settle + swing * np.sin(2 * np.pi * rest / period) * (1 - np.exp(-rest / (fall / 4)))
        elif after != "settle":
            raise ValueError(f"after must be 'settle', 'decay' or 'oscillate'; got {after!r}")
        log_clean[peak_at:] = settle
    curve = np.exp(log_clean) * np.abs(1 + noise * rng.standard_normal(n))
    return scale * curve, jump


def warmup_healthy(n: int = 1000, spike: float = 3.0, noise: float = 0.05, seed: int = 0, scale: float = 1.0,
                   tau: float = 0.15) -> np.ndarray:
    """A healthy decay (:func:`healthy`) whose warm-up makes the loss bump up to ``spike`` x in its first steps.

    The bump rises over 0.5-3% of the run and falls back over 1-5% (a learning-rate warm-up that
    briefly overshoots, then the run learns normally).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    base = healthy(n, noise, 1.0, seed=seed, tau=tau)
    up = max(1.0, float(rng.uniform(0.005, 0.03)) * n)
    down = max(1.0, float(rng.uniform(0.01, 0.05)) * n)
    at = float(rng.uniform(0.0, 0.03)) * n
    shape = np.where(t < at, 0.0, np.where(t < at + up, (t - at) / up, np.exp(-(t - at - up) / (down / 3))))
    return scale * base * (1 + (spike - 1) * shape)


def midrun_plateau(n: int = 1000, onset: float = 0.4, duration: float = 0.2, noise: float = 0.03, seed: int = 0,
                   tau: float = 0.4) -> tuple[np.ndarray, int, int]:
    """A healthy decay (time constant ``tau`` x the run) frozen from ``onset`` for ``duration`` of the run.

    Like a learning rate of 0 for a stretch: the loss stays at the level it had reached, then
    continues its decay where it stopped. Returns (curve, first index of the stretch, first index after it).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    begin, stop = int(onset * n), int((onset + duration) * n)
    active = np.where(t < begin, t, np.where(t < stop, begin, t - (stop - begin)))
    clean = 0.1 + 2.2 * np.exp(-active / (tau * n))
    return np.abs(clean * (1 + noise * rng.standard_normal(n))), begin, stop


@pytest.fixture(scope="session")
def families() -> SimpleNamespace:
    """The synthetic curve families above, as one namespace (test modules cannot import conftest)."""
    return SimpleNamespace(healthy=healthy, plateau_then_fall=plateau_then_fall, flat=flat, diverging=diverging,
                           oscillating=oscillating, collapsed=collapsed, with_spikes=with_spikes,
                           early_blowup=early_blowup, warmup_healthy=warmup_healthy, midrun_plateau=midrun_plateau)


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


def load_real_runs() -> object:
    """tests/monitor/real_runs.py (tiny real Lightning / HF Trainer runs), loaded by path."""
    import importlib.util
    import sys
    from pathlib import Path

    if "dldebug_real_runs" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "monitor" / "real_runs.py"
        spec = importlib.util.spec_from_file_location("dldebug_real_runs", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["dldebug_real_runs"] = module
        spec.loader.exec_module(module)
    return sys.modules["dldebug_real_runs"]


@pytest.fixture(scope="session")
def real_runs() -> object:
    return load_real_runs()
