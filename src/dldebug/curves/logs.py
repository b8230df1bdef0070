"""Read a training log in any supported format and diagnose one of its curves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, get_args

from dldebug.curves.analysis import diagnose_curve
from dldebug.curves.records import CurveBuilder, CurveLog, Damage, LogFormat, guess_mode
from dldebug.curves.tensorboard import event_files, read_event_file
from dldebug.curves.text_formats import LogDamage, read_csv, read_jsonl, read_trainer_state
from dldebug.errors import ConfigError, FileFormatError
from dldebug.findings import Finding, Report, Severity

__all__ = ["detect_format", "diagnose_log", "read_log"]

_FORMATS = get_args(LogFormat)


def read_log(path: str | Path, *, format: LogFormat | Literal["auto"] = "auto", partial: bool = False) -> CurveLog:
    """Read every numeric metric of a training log.

    Supported: CSV with a header (any numeric column; a ``step`` column when present),
    JSON lines, a TensorBoard event file or directory, Lightning's CSVLogger
    ``metrics.csv`` (sparse columns) and Hugging Face ``trainer_state.json``
    (``log_history``). Directories are searched for event files, a ``metrics.csv``
    (the highest ``version_N``) or a ``trainer_state.json`` (the latest checkpoint).

    Args:
        path: a log file or directory.
        format: ``"auto"`` (default) detects it from the name and content.
        partial: keep what was readable before a damaged line instead of raising;
            ``CurveLog.damage`` then says where reading stopped.

    Returns:
        A CurveLog: metric name -> Curve (sorted by step).

    Raises:
        FileFormatError: missing, empty, unsupported, truncated or corrupt log (names file and line).
        MissingDependencyError: a TensorBoard log without the ``tensorboard`` package.
    """
    path = Path(path)
    kind, files = detect_format(path) if format == "auto" else (_checked_format(format), _files_for(path, format))
    builder = CurveBuilder()
    damage = None
    for file in files:
        try:
            _read_one(kind, file, builder, _run_prefix(file, files, path))
        except LogDamage as exc:
            if not partial:
                raise FileFormatError(f"{exc.reason}. Pass partial=True (--partial) to analyse what was "
                                      "read before it.", path=file, line=exc.line) from None
            damage = Damage(file, exc.line, exc.reason)
            break
    if not len(builder):
        where = f" before the damage at {damage.describe()}" if damage else ""
        raise FileFormatError(f"no numeric metric could be read{where}; expected a {kind} log with numbers.",
                              path=path)
    return CurveLog(path, kind, builder.build(), damage)


def diagnose_log(
    path: str | Path,
    metric: str | None = None,
    *,
    mode: Literal["auto", "min", "max"] = "auto",
    partial: bool = False,
    format: LogFormat | Literal["auto"] = "auto",
) -> Report:
    """Read a log (see :func:`read_log`) and :func:`~dldebug.curves.diagnose_curve` one metric.

    Args:
        path: a log file or directory.
        metric: the metric to judge; None picks the loss-like one (``loss``, ``train_loss``, ...).
        mode: ``"auto"`` guesses from the name (accuracy-like names are ``"max"``), else as given.
        partial: analyse what was readable before damage; a ``log.truncated`` warning says where.
        format: the log format, or ``"auto"``.

    Returns:
        The curve's Report plus, for a damaged log read with ``partial=True``, a ``log.truncated`` finding.

    Raises:
        InputError: the metric is not in the log (the message lists the available ones).
        FileFormatError, MissingDependencyError: see :func:`read_log`.
    """
    if mode not in ("auto", "min", "max"):
        raise ConfigError(f"mode must be one of ['auto', 'min', 'max']; got {mode!r}.")
    log = read_log(path, format=format, partial=partial)
    curve = log.curve(metric)
    chosen = guess_mode(curve.name) if mode == "auto" else mode
    report = diagnose_curve(curve.values, curve.steps, name=curve.name, mode=chosen)
    findings = list(report.own_findings)
    if log.damage is not None:
        findings.append(_damage_finding(log, curve.name, len(curve), curve.steps[-1].item() if len(curve) else None))
    return Report(findings, title=f"Curve diagnosis: {curve.name} ({log.path.name})", figures=report.figures,
                  tables=report.tables,
                  meta={**report.meta, "log": str(log.path), "format": log.format, "metrics": log.metrics})


def _damage_finding(log: CurveLog, name: str, points: int, last_step: float | None) -> Finding:
    assert log.damage is not None
    return Finding(
        "log.truncated", Severity.WARNING,
        f"The log is damaged at {log.damage.describe()}; reading stopped there and the {points} {name} "
        f"points read before it (up to step {last_step}) were analysed.",
        {"path": str(log.damage.path), "line": log.damage.line if log.damage.line is not None else "unknown",
         "reason": log.damage.reason, "points_read": points,
         "last_step": last_step if last_step is not None else "none"},
        fix="Check whether the run crashed or the disk filled up while writing the log; re-export the log "
            "if the run still exists.",
    )


def detect_format(path: Path) -> tuple[LogFormat, list[Path]]:
    """The format of a log file or directory and the file(s) to read.

    Raises:
        FileFormatError: the path does not exist or holds no supported log.
    """
    if not path.exists():
        raise FileFormatError("no such file or directory.", path=path)
    if path.is_dir():
        return _detect_directory(path)
    name, suffix = path.name, path.suffix.lower()
    if name.startswith("events.out.tfevents"):
        return "tensorboard", [path]
    if name == "trainer_state.json":
        return "hf_trainer_state", [path]
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl", [path]
    head = _head(path)
    if head.lstrip().startswith(("{", "[")):
        return ("hf_trainer_state" if '"log_history"' in head else "jsonl"), [path]
    return ("lightning" if name == "metrics.csv" else "csv"), [path]


def _detect_directory(path: Path) -> tuple[LogFormat, list[Path]]:
    events = event_files(path)
    if events:
        return "tensorboard", events
    states = sorted(path.rglob("trainer_state.json"), key=_natural_key)
    if states:
        return "hf_trainer_state", [states[-1]]
    metrics = sorted(path.rglob("metrics.csv"), key=_natural_key)
    if metrics:
        return "lightning", [metrics[-1]]
    raise FileFormatError("no training log found in this directory: expected TensorBoard event files "
                          "(events.out.tfevents.*), a Lightning metrics.csv or a Hugging Face "
                          "trainer_state.json.", path=path)


def _natural_key(path: Path) -> list[object]:
    """Sort ``version_10`` after ``version_9`` and ``checkpoint-1000`` after ``checkpoint-500``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def _head(path: Path, size: int = 65536) -> str:
    with path.open("rb") as handle:
        return handle.read(size).decode("utf-8", errors="replace")


def _checked_format(format: str) -> LogFormat:
    if format not in _FORMATS:
        raise ConfigError(f"format must be 'auto' or one of {list(_FORMATS)}; got {format!r}.")
    return format  # type: ignore[return-value]


def _files_for(path: Path, format: str) -> list[Path]:
    if not path.exists():
        raise FileFormatError("no such file or directory.", path=path)
    if path.is_dir():
        found, files = _detect_directory(path)
        if found != format:
            raise FileFormatError(f"this directory holds a {found} log, not {format}.", path=path)
        return files
    return [path]


def _run_prefix(file: Path, files: list[Path], root: Path) -> str:
    """Tag prefix naming the run folder when a TensorBoard directory holds several runs."""
    parents = {f.parent for f in files}
    if len(parents) < 2 or not root.is_dir():
        return ""
    relative = file.parent.relative_to(root)
    return "" if str(relative) == "." else f"{relative.as_posix()}/"


def _read_one(kind: LogFormat, file: Path, builder: CurveBuilder, prefix: str) -> None:
    if kind == "tensorboard":
        read_event_file(file, builder, prefix)
    elif kind == "hf_trainer_state":
        read_trainer_state(file, builder)
    elif kind == "jsonl":
        read_jsonl(file, builder)
    else:
        read_csv(file, builder)
