"""Read a training log in any supported format and diagnose its curves, one run at a time."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from dldebug.curves.analysis import diagnose_curve
from dldebug.curves.log_findings import (
    damage_finding,
    hidden_nonfinite,
    lr_at_steps,
    mark_hidden_nonfinite,
    overlap_finding,
)
from dldebug.curves.records import CurveBuilder, CurveLog, Damage, LogFormat, guess_mode
from dldebug.curves.runs import LogRun, find_runs
from dldebug.curves.tensorboard import read_event_file
from dldebug.curves.text_formats import LogDamage, read_csv, read_jsonl, read_trainer_state
from dldebug.errors import ConfigError, FileFormatError, InputError
from dldebug.findings import Finding, Report

__all__ = ["detect_format", "diagnose_log", "find_runs", "read_log", "read_runs"]

_FORMATS = get_args(LogFormat)


def read_log(path: str | Path, *, format: LogFormat | Literal["auto"] = "auto", partial: bool = False) -> CurveLog:
    """Read every numeric metric of one training run's log.

    Supported: CSV with a header (any numeric column; a ``step`` column when present; step, epoch,
    index and wall-time columns are never metrics; TensorBoard's ``Wall time,Step,Value`` export),
    JSON lines, a TensorBoard event file or run folder, Lightning's CSVLogger ``metrics.csv`` (sparse
    columns) and Hugging Face ``trainer_state.json`` (``log_history``). A directory must hold one
    run (see :func:`find_runs`); for a folder of several runs use :func:`read_runs`. A step logged
    twice (a resumed run) keeps its later value; ``Curve.overlap`` says which steps.

    Args:
        path: a log file or a directory holding one run.
        format: ``"auto"`` (default) detects it from the name and content.
        partial: keep what was readable before a damaged line instead of raising;
            ``CurveLog.damage`` then says where reading stopped.

    Returns:
        A CurveLog: metric name -> Curve (sorted by step).

    Raises:
        FileFormatError: missing, empty, unsupported, truncated or corrupt log (names file and line),
            or a directory of several runs (the message names them).
        MissingDependencyError: a TensorBoard log without the ``tensorboard`` package.
    """
    path = Path(path)
    runs = _runs(path, format)
    if len(runs) > 1:
        raise FileFormatError(f"this directory holds {len(runs)} runs: {', '.join(r.describe() for r in runs)}. "
                              "Pass one run's folder, or use read_runs() / diagnose_log() (dldebug curve), which "
                              "judge each run in its own section.", path=path)
    return _read_run(path, runs[0], partial)


def read_runs(path: str | Path, *, format: LogFormat | Literal["auto"] = "auto",
              partial: bool = False) -> dict[str, CurveLog]:
    """Every run of a log file or directory, by run name (its folder relative to ``path``).

    Raises:
        FileFormatError, MissingDependencyError: see :func:`read_log`.
    """
    path = Path(path)
    runs = _runs(path, format)
    return {run.name: _read_run(path if len(runs) == 1 else run.folder, run, partial) for run in runs}


def diagnose_log(
    path: str | Path,
    metric: str | None = None,
    *,
    mode: Literal["auto", "min", "max"] = "auto",
    partial: bool = False,
    format: LogFormat | Literal["auto"] = "auto",
    lr_metric: str | None = "auto",
) -> Report:
    """Read a log (see :func:`read_log`) and :func:`~dldebug.curves.diagnose_curve` one metric of each run.

    Args:
        path: a log file or directory; a directory of several runs gives one section per run.
        metric: the metric to judge; None picks the loss-like one (``loss``, ``train_loss``, ...),
            or the only metric of a log that has one.
        mode: ``"auto"`` guesses from the name (accuracy-like names are ``"max"``), else as given.
        partial: analyse what was readable before damage; a ``log.truncated`` warning says where.
        format: the log format, or ``"auto"``.
        lr_metric: the learning-rate metric that explains plateaus: ``"auto"`` (``learning_rate``,
            ``lr``, ``lr-SGD``, ... when the log has one), a name, or None (not used).

    Returns:
        The curve's Report plus ``log.truncated`` (damaged log, ``partial=True``) and
        ``log.overlapping_steps`` (steps logged twice) findings. For a Hugging Face
        ``trainer_state.json`` the entries where the NaN filter logged ``loss: 0.0`` beside a
        non-finite ``grad_norm`` count as non-finite. With several runs: one section per run
        (titled by the run's folder) and ``meta["runs"]``.

    Raises:
        InputError: the metric is in no run (the message lists the available ones).
        FileFormatError, MissingDependencyError: see :func:`read_log`.
    """
    if mode not in ("auto", "min", "max"):
        raise ConfigError(f"mode must be one of ['auto', 'min', 'max']; got {mode!r}.")
    logs = read_runs(path, format=format, partial=partial)
    if len(logs) == 1:
        return _diagnose_run(next(iter(logs.values())), metric, mode, lr_metric, None)
    with_metric = {name: log for name, log in logs.items() if metric is None or metric in log.curves}
    if not with_metric:
        available = sorted({m for log in logs.values() for m in log.metrics})
        raise InputError(f"{path}: no run has a metric named {metric!r}; runs: {', '.join(logs)}; metrics: "
                         f"{', '.join(available)}.")
    sections = [_diagnose_run(log, metric, mode, lr_metric, name) for name, log in with_metric.items()]
    skipped = sorted(set(logs) - set(with_metric))
    return Report(title=f"Curve diagnosis: {len(sections)} runs in {Path(path).name}", sections=sections,
                  meta={"log": str(path), "runs": list(with_metric), "runs_without_metric": skipped})


def _diagnose_run(log: CurveLog, metric: str | None, mode: str, lr_metric: str | None,
                  run: str | None) -> Report:
    curve = log.curve(metric)
    chosen = guess_mode(curve.name) if mode == "auto" else mode
    values = curve.values
    hidden = hidden_nonfinite(log, curve)
    if hidden is not None:
        values = np.where(hidden, np.nan, values)
    lr_curve = log.lr_curve() if lr_metric == "auto" else (log.curve(lr_metric) if lr_metric else None)
    lr = None if lr_curve is None or lr_curve.name == curve.name else lr_at_steps(lr_curve, curve.steps)
    report = diagnose_curve(values, curve.steps, name=curve.name, mode=chosen, lr=lr)  # type: ignore[arg-type]
    findings: list[Finding] = [mark_hidden_nonfinite(f, hidden, curve) if hidden is not None and
                               f.check == "loss.nonfinite" else f for f in report.own_findings]
    findings += [f for f in (overlap_finding(curve),) if f is not None]
    if log.damage is not None:
        findings.append(damage_finding(log, curve.name, len(curve), curve.steps[-1].item() if len(curve) else None))
    where = log.path.name if run is None else run
    figures, tables = report.figures, report.tables
    if run is not None:  # one figure and table per run: names stay unique in the merged report
        figures = tuple(dataclasses.replace(f, name=f"{f.name}: {run}", title=f"{f.title} ({run})") for f in figures)
        tables = tuple(dataclasses.replace(t, name=f"{t.name}: {run}") for t in tables)
    return Report(findings, title=f"Curve diagnosis: {curve.name} ({where})", figures=figures, tables=tables,
                  meta={**report.meta, "log": str(log.path), "format": log.format, "metrics": log.metrics,
                        "run": where, "lr_metric": lr_curve.name if lr is not None and lr_curve else "none"})


def detect_format(path: Path) -> tuple[LogFormat, list[Path]]:
    """The format of a log file or one-run directory and the file(s) to read.

    Raises:
        FileFormatError: the path does not exist, holds no supported log, or holds several runs.
    """
    runs = _runs(path, "auto")
    if len(runs) > 1:
        raise FileFormatError(f"this directory holds {len(runs)} runs: {', '.join(r.describe() for r in runs)}.",
                              path=path)
    return runs[0].format, list(runs[0].files)


def _runs(path: Path, format: str) -> list[LogRun]:
    if format != "auto" and format not in _FORMATS:
        raise ConfigError(f"format must be 'auto' or one of {list(_FORMATS)}; got {format!r}.")
    if not path.exists():
        raise FileFormatError("no such file or directory.", path=path)
    if not path.is_dir():
        kind = _file_format(path) if format == "auto" else format
        return [LogRun(path.name, kind, (path,), path.parent)]  # type: ignore[arg-type]
    runs = find_runs(path)
    if format != "auto":
        runs = [run for run in runs if run.format == format]
        if not runs:
            raise FileFormatError(f"this directory holds no {format} log.", path=path)
    return runs


def _file_format(path: Path) -> LogFormat:
    name, suffix = path.name, path.suffix.lower()
    if name.startswith("events.out.tfevents"):
        return "tensorboard"
    if name == "trainer_state.json":
        return "hf_trainer_state"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    head = _head(path)
    if head.lstrip().startswith(("{", "[")):
        return "hf_trainer_state" if '"log_history"' in head else "jsonl"
    return "lightning" if name == "metrics.csv" else "csv"


def _head(path: Path, size: int = 65536) -> str:
    with path.open("rb") as handle:
        return handle.read(size).decode("utf-8", errors="replace")


def _read_run(path: Path, run: LogRun, partial: bool) -> CurveLog:
    builder = CurveBuilder()
    damage = None
    for file in run.files:
        try:
            _read_one(run.format, file, builder)
        except LogDamage as exc:
            if not partial:
                raise FileFormatError(f"{exc.reason}. Pass partial=True (--partial) to analyse what was "
                                      "read before it.", path=file, line=exc.line) from None
            damage = Damage(file, exc.line, exc.reason)
            break
    if not len(builder):
        where = f" before the damage at {damage.describe()}" if damage else ""
        raise FileFormatError(f"no numeric metric could be read{where}; expected a {run.format} log with numbers.",
                              path=path)
    return CurveLog(path, run.format, builder.build(), damage)


def _read_one(kind: LogFormat, file: Path, builder: CurveBuilder) -> None:
    if kind == "tensorboard":
        read_event_file(file, builder)
    elif kind == "hf_trainer_state":
        read_trainer_state(file, builder)
    elif kind == "jsonl":
        read_jsonl(file, builder)
    else:
        read_csv(file, builder)
