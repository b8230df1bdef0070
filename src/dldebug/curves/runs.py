"""Which training runs a log path holds, and which files make up each one.

A log directory often holds several runs: Lightning writes ``version_0``, ``version_1``, ... for
every ``fit``; a TensorBoard root has one folder per run; a Hugging Face ``output_dir`` holds
``checkpoint-N`` folders of one run, and a parent folder may hold several output dirs. Each run
is judged on its own (:func:`dldebug.curves.diagnose_log`) rather than one of them picked by
name order.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from dldebug.curves.records import LogFormat
from dldebug.curves.tensorboard import event_files
from dldebug.errors import FileFormatError

__all__ = ["LogRun", "find_runs", "natural_key"]

_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
_GLOBAL_STEP = re.compile(rb'"global_step"\s*:\s*(\d+)')


@dataclass(frozen=True)
class LogRun:
    """One run of a log: its name (the folder, relative to what was given), format, files (reading order), folder."""

    name: str
    format: LogFormat
    files: tuple[Path, ...]
    folder: Path

    def describe(self) -> str:
        return f"{self.name} ({self.format})"


def natural_key(path: Path) -> list[object]:
    """Sort ``version_10`` after ``version_9`` and ``checkpoint-1000`` after ``checkpoint-500``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def find_runs(directory: Path) -> list[LogRun]:
    """Every run under ``directory``, in natural folder order.

    * TensorBoard: each folder holding ``events.out.tfevents.*`` files is one run (several files
      in one folder are one resumed run, read in name order, which is time order);
    * Lightning ``CSVLogger``: each ``metrics.csv`` is one run (its ``version_N`` folder);
    * Hugging Face: each ``output_dir`` (the folder of its ``checkpoint-N`` folders, or the folder
      of a ``trainer_state.json``) is one run, read from its latest ``trainer_state.json`` (the
      highest ``global_step``; each one holds the whole history up to it).

    Raises:
        FileFormatError: the directory holds no supported log.
    """
    found: list[LogRun] = []
    by_folder: dict[Path, list[Path]] = {}
    for file in event_files(directory):
        by_folder.setdefault(file.parent, []).append(file)
    found += [LogRun(_name(folder, directory), "tensorboard", tuple(files), folder)
              for folder, files in by_folder.items()]
    found += [LogRun(_name(file.parent, directory), "lightning", (file,), file.parent)
              for file in sorted(directory.rglob("metrics.csv"), key=natural_key) if file.is_file()]
    states: dict[Path, list[Path]] = {}
    for file in directory.rglob("trainer_state.json"):
        if file.is_file():
            root = file.parent.parent if _CHECKPOINT.fullmatch(file.parent.name) else file.parent
            states.setdefault(root, []).append(file)
    found += [LogRun(_name(root, directory), "hf_trainer_state", (max(files, key=_progress),), root)
              for root, files in states.items()]
    if not found:
        raise FileFormatError("no training log found in this directory: expected TensorBoard event files "
                              "(events.out.tfevents.*), a Lightning metrics.csv or a Hugging Face "
                              "trainer_state.json.", path=directory)
    found.sort(key=lambda run: (natural_key(Path(run.name)), run.format))
    return _unique_names(found)


def _name(folder: Path, root: Path) -> str:
    relative = folder.relative_to(root).as_posix()
    return root.name or str(root) if relative == "." else relative


def _progress(path: Path) -> tuple[int, list[object]]:
    """How far a trainer_state.json got: its ``global_step`` (read from the head), then its folder name."""
    with path.open("rb") as handle:
        head = handle.read(4096)
    match = _GLOBAL_STEP.search(head)
    return (int(match.group(1)) if match else -1, natural_key(path))


def _unique_names(runs: list[LogRun]) -> list[LogRun]:
    """A folder holding two formats (a TensorBoard and a CSV logger) gives two runs: name them by format."""
    names = [run.name for run in runs]
    return [dataclasses.replace(run, name=f"{run.name} ({run.format})") if names.count(run.name) > 1 else run
            for run in runs]
