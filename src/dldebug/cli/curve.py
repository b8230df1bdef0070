"""``dldebug curve``: diagnose a loss or metric curve read from a training log."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from dldebug.cli.common import FAIL_ON_OPTION, HTML_OPTION, JSON_OPTION, FailOn, emit


class LogFormatOption(str, Enum):
    """``--format`` values: detect the log format, or name it."""

    auto = "auto"
    csv = "csv"
    jsonl = "jsonl"
    tensorboard = "tensorboard"
    lightning = "lightning"
    hf_trainer_state = "hf_trainer_state"


class CurveMode(str, Enum):
    """``--mode`` values: guess from the metric name, or say whether lower or higher is better."""

    auto = "auto"
    min = "min"
    max = "max"


def command(
    path: Path = typer.Argument(..., help="A log: CSV, JSON lines, TensorBoard event file/dir, Lightning "
                                          "metrics.csv or Hugging Face trainer_state.json (file or dir; a "
                                          "folder of several runs is judged run by run)."),
    metric: str = typer.Option(None, "--metric", help="The metric to judge (default: the loss-like one)."),
    mode: CurveMode = typer.Option(CurveMode.auto, "--mode", case_sensitive=False,
                                   help="min: lower is better (loss); max: higher is better (accuracy); "
                                        "auto: guess from the name."),
    log_format: LogFormatOption = typer.Option(LogFormatOption.auto, "--format", case_sensitive=False,
                                               help="The log format (default: detected from name and content)."),
    partial: bool = typer.Option(False, "--partial", help="Analyse what was readable before a damaged line "
                                                          "instead of stopping with an error."),
    lr_metric: str = typer.Option("auto", "--lr-metric", help="The learning-rate metric that explains plateaus: "
                                                              "auto (learning_rate, lr, lr-SGD, ...), a name, "
                                                              "or none."),
    as_json: bool = JSON_OPTION,
    html: Path = HTML_OPTION,
    fail_on: FailOn = FAIL_ON_OPTION,
) -> None:
    """Read a training log and report early blow-ups, plateaus, divergence, stuck runs, oscillation and collapse.

    A folder of several runs (Lightning version_N, TensorBoard run folders, Hugging Face output
    dirs) is judged run by run, one section each.
    """
    from dldebug.curves import diagnose_log

    report = diagnose_log(path, metric, mode=mode.value, partial=partial, format=log_format.value,  # type: ignore[arg-type]
                          lr_metric=None if lr_metric.lower() == "none" else lr_metric)
    emit(report, as_json=as_json, html=html, fail_on=fail_on)
