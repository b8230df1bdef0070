"""Fuzz targets for the training-log readers (``dldebug.curves.read_log`` / ``diagnose_log``).

Each generator writes a log the way its framework does and records the values it
wrote. The oracle: a pristine log must read back exactly those values (extra
curves, such as Lightning's ``epoch`` column, are allowed); a pristine log with no
value must be refused; any log that reads must give well-formed curves, and
``diagnose_log`` on it must give a report that survives a JSON round trip.
"""

from __future__ import annotations

import csv
import io
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
from fuzz_core import Target
from fuzz_mutations import FileCase, damaged, damages, file_cases, raw_file
from hypothesis import strategies as st

from dldebug.curves import diagnose_log, read_log
from dldebug.errors import DldebugError
from dldebug.findings import Report

Expected = dict[str, list[tuple[float, float]]]  # metric -> (step, value) in writing order

_STEP_NAMES = {"step", "global_step", "iteration", "iter", "steps", "epoch"}
_names = st.one_of(
    st.sampled_from(["loss", "train_loss", "val_loss", "acc", "lr", "val/acc", "grad norm", "Loss", "train/loss"]),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1,
            max_size=8),
).filter(lambda n: n.lower() not in _STEP_NAMES and n == n.strip())
_finite = st.floats(allow_nan=False, allow_infinity=False)
_any_float = st.floats(allow_nan=True, allow_infinity=True)
_step_values = st.integers(0, 10**6)


def _add(expected: Expected, name: str, step: float, value: float) -> None:
    expected.setdefault(name, []).append((step, value))


# -- CSV and Lightning metrics.csv ---------------------------------------------------------------------
@st.composite
def csv_logs(draw: Any, lightning: bool = False) -> tuple[bytes, Expected]:
    """A CSV log with a header; empty cells are missing values; sometimes BOM, CRLF, tabs."""
    names = draw(st.lists(_names, min_size=1, max_size=4, unique_by=str.lower))
    if lightning:
        names = ["epoch", "step", *[n for n in names if n.lower() not in _STEP_NAMES]]
    with_step = lightning or draw(st.booleans())
    header = (["step"] if with_step and not lightning else []) + names
    rows = draw(st.lists(st.lists(st.one_of(st.none(), _any_float), min_size=len(names), max_size=len(names)),
                         max_size=30))
    steps = sorted(draw(st.lists(_step_values, min_size=len(rows), max_size=len(rows))))
    delimiter = "\t" if not any("," in n or "\t" in n for n in header) and draw(st.booleans()) else ","
    text, expected = io.StringIO(), {}
    writer = csv.writer(text, delimiter=delimiter, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(header)
    for index, (step, row) in enumerate(zip(steps, rows, strict=True)):
        if lightning:
            row = [float(step // 10), float(step), *row[2:]]
        cells = [repr(v) if v is not None else "" for v in row]
        writer.writerow(([str(step)] if with_step and not lightning else []) + cells)
        for name, value in zip(names, row, strict=True):
            if value is not None and name not in ("step", "epoch"):
                _add(expected, name, float(step if with_step else index), value)
    data = text.getvalue().encode()
    if draw(st.integers(0, 9)) == 0:
        data = b"\xef\xbb\xbf" + data  # Excel's BOM
    if lightning and not expected:
        return data, None  # the epoch column alone is a curve: nothing certain to expect
    return data, expected


@st.composite
def wild_csv(draw: Any) -> tuple[bytes, None]:
    """Ragged rows, quotes, text and huge numbers: no expected values."""
    cell = st.one_of(st.text(max_size=6), _any_float.map(repr), st.integers().map(str), st.just("1" * 400),
                     st.sampled_from(["nan", "-inf", "1e999", '"', "", " ", "step", "\r"]))
    rows = draw(st.lists(st.lists(cell, max_size=5), max_size=12))
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return text.getvalue().encode("utf-8", errors="surrogatepass"), None


# -- JSON lines ----------------------------------------------------------------------------------------
_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-10**500, 10**500), _any_float,
                          st.text(max_size=5))
_json = st.recursive(_json_scalars, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@st.composite
def jsonl_logs(draw: Any) -> tuple[bytes, Expected]:
    """One object per line, nested metrics flattened as ``a/b``, text fields ignored."""
    names = draw(st.lists(_names.filter(lambda n: "/" not in n), min_size=1, max_size=3, unique=True))
    n = draw(st.integers(0, 30))
    steps = sorted(draw(st.lists(_step_values, min_size=n, max_size=n)))
    nested = draw(st.booleans())
    lines, expected = [], {}
    for step in steps:
        record: dict[str, Any] = {"step": step, "note": "text is ignored"}
        for name in names:
            value = draw(st.one_of(st.none(), _finite))
            if value is None:
                continue
            if nested:
                record.setdefault("train", {})[name] = value
            else:
                record[name] = value
            _add(expected, f"train/{name}" if nested else name, float(step), value)
        lines.append(json.dumps(record))
    return ("\n".join(lines) + "\n").encode(), expected


@st.composite
def wild_jsonl(draw: Any) -> tuple[bytes, None]:
    """Any JSON per line (arrays, scalars, huge ints, NaN, odd steps), or one JSON array."""
    records = draw(st.lists(st.one_of(_json, st.dictionaries(st.sampled_from(["step", "loss", "epoch", "x"]),
                                                             _json, max_size=4)), max_size=8))
    if draw(st.booleans()):
        return json.dumps(records).encode(), None
    return "\n".join(json.dumps(r) for r in records).encode(), None


# -- Hugging Face trainer_state.json --------------------------------------------------------------------
@st.composite
def trainer_states(draw: Any) -> tuple[bytes, Expected]:
    """``log_history`` with training and evaluation entries, as ``Trainer`` writes it."""
    n = draw(st.integers(0, 25))
    steps = sorted(draw(st.lists(st.integers(1, 10**5), min_size=n, max_size=n)))
    history, expected = [], {}
    for step in steps:
        entry: dict[str, Any] = {"epoch": step / 100, "step": step}
        if draw(st.booleans()):
            entry["loss"] = draw(_finite)
            entry["learning_rate"] = draw(st.floats(0, 1))
        else:
            entry["eval_loss"] = draw(_finite)
            entry["eval_runtime"] = draw(st.floats(0, 100))
        for key, value in entry.items():
            if key not in ("epoch", "step"):
                _add(expected, key, float(step), value)
        history.append(entry)
    state = {"best_metric": None, "epoch": 1.0, "global_step": steps[-1] if steps else 0, "log_history": history,
             "trial_name": None}
    return json.dumps(state, indent=2).encode(), expected


@st.composite
def wild_trainer_state(draw: Any) -> tuple[bytes, None]:
    history = draw(st.one_of(_json, st.lists(st.dictionaries(st.sampled_from(["step", "loss", "epoch"]), _json,
                                                             max_size=3), max_size=5)))
    return json.dumps({"log_history": history, "x": draw(_json)}).encode(), None


# -- TensorBoard event files ----------------------------------------------------------------------------
def _record(payload: bytes) -> bytes:
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    header = struct.pack("<Q", len(payload))
    return header + struct.pack("<I", masked_crc32c(header)) + payload + struct.pack("<I", masked_crc32c(payload))


@st.composite
def event_files(draw: Any) -> tuple[bytes, Expected]:
    """A TFRecord file of ``Event`` protos: a version event, then scalars (TF1 simple_value or TF2 tensors)."""
    from tensorboard.compat.proto import event_pb2

    tags = draw(st.lists(_names, min_size=1, max_size=3, unique=True))
    head = event_pb2.Event(wall_time=1.0, file_version="brain.Event:2")
    records, expected = [_record(head.SerializeToString())], {}
    for step in sorted(draw(st.lists(st.integers(0, 2**40), max_size=20))):
        event = event_pb2.Event(wall_time=2.0, step=step)
        for tag in tags:
            value = float(np.float32(draw(st.floats(width=32))))
            summary_value = event.summary.value.add(tag=tag)
            if draw(st.booleans()):
                summary_value.simple_value = value
            else:
                summary_value.tensor.dtype = 1  # DT_FLOAT, a scalar: what tf.summary.scalar writes
                summary_value.tensor.float_val.append(value)
            _add(expected, tag, float(step), value)
        records.append(_record(event.SerializeToString()))
    return b"".join(records), expected


@st.composite
def wild_event_files(draw: Any) -> tuple[bytes, None]:
    """Well-framed records holding odd tensors (wrong dtypes, short contents, shapes) or random protos."""
    from tensorboard.compat.proto import event_pb2

    records = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            records.append(_record(draw(st.binary(max_size=64))))
            continue
        event = event_pb2.Event(step=draw(st.integers(-2**63, 2**63 - 1)))
        value = event.summary.value.add(tag=draw(st.text(max_size=4)))
        value.tensor.dtype = draw(st.integers(0, 30))
        value.tensor.tensor_content = draw(st.binary(max_size=9))
        for _ in range(draw(st.integers(0, 2))):
            value.tensor.tensor_shape.dim.add(size=draw(st.integers(-1, 3)))
        if draw(st.booleans()):
            value.tensor.half_val.append(draw(st.integers(0, 2**16 - 1)))
        records.append(_record(event.SerializeToString()))
    return b"".join(records), None


# -- the targets -----------------------------------------------------------------------------------------
def _check_log(case: FileCase, workdir: Path, partial: bool, format: str = "auto") -> None:
    path = case.write(workdir)
    expected = case.expected if case.pristine else None
    if expected is not None and not expected:
        try:
            read_log(path, format=format)  # type: ignore[arg-type]
        except DldebugError:
            return
        raise AssertionError("a log without a single value was read instead of refused")
    log = read_log(path, format=format, partial=partial)  # type: ignore[arg-type]
    for name, curve in log.curves.items():
        assert len(curve.steps) == len(curve.values), name
        assert np.all(np.diff(curve.steps) >= 0), f"{name}: steps not sorted"
        assert np.all(np.isfinite(curve.steps)), f"{name}: non-finite step"
    if expected is not None:
        _assert_values(log.curves, expected)
    report = diagnose_log(path, next(iter(log.curves)), partial=partial, format=format)  # type: ignore[arg-type]
    assert Report.from_json(report.to_json()) == report


def _assert_values(curves: Any, expected: Expected) -> None:
    for name, points in expected.items():
        assert name in curves, f"metric {name!r} missing; read {list(curves)}"
        last: dict[Any, Any] = {}
        for step, value in points:  # a repeated step (a resumed log): the later value wins
            last[step] = value
        steps = np.array(sorted(last))
        values = np.array([last[s] for s in sorted(last)])
        np.testing.assert_array_equal(curves[name].steps, steps, err_msg=name)
        np.testing.assert_array_equal(curves[name].values, values, err_msg=name)


def _log_case(valid: st.SearchStrategy[tuple[bytes, Any]], wild: st.SearchStrategy[tuple[bytes, None]],
              name: str | st.SearchStrategy[str]) -> st.SearchStrategy[tuple[FileCase, bool]]:
    return st.tuples(st.one_of(file_cases(valid, name), file_cases(wild, name)), st.booleans())


def _run(format: str = "auto") -> Any:
    def run(case: tuple[FileCase, bool], workdir: Path) -> None:
        _check_log(case[0], workdir, case[1], format)

    return run


@st.composite
def lightning_dirs(draw: Any) -> tuple[FileCase, bool]:
    """``lightning_logs/version_N/metrics.csv``: the reader must take the highest version."""
    versions = draw(st.lists(st.integers(0, 12), min_size=1, max_size=3, unique=True))
    files, expected = [], None
    for version in sorted(versions):
        content, expected = draw(csv_logs(lightning=True))
        files.append((f"lightning_logs/version_{version}/metrics.csv", content))
    edits = ()
    if draw(st.booleans()):
        edits = tuple(draw(st.lists(damages, min_size=1, max_size=3)))
        files[-1] = (files[-1][0], damaged(files[-1][1], list(edits)))
    opened = draw(st.sampled_from(["lightning_logs", files[-1][0]]))
    return FileCase(tuple(files), opened, expected, edits), draw(st.booleans())


@st.composite
def tensorboard_dirs(draw: Any) -> tuple[FileCase, bool]:
    """One event file, opened as a file or through its run directory."""
    case = draw(file_cases(st.one_of(event_files(), wild_event_files()), "run/events.out.tfevents.1.host.0"))
    opened = draw(st.sampled_from(["run", case.open]))
    return FileCase(case.files, opened, case.expected, case.edits), draw(st.booleans())


def _raw_log(name: str, opened: str | None = None) -> Any:
    wrap = raw_file(name, opened)
    return lambda data: (wrap(data), True)


_csv_names = st.sampled_from(["log.csv", "train.tsv", "history.txt"])
_jsonl_names = st.sampled_from(["m.jsonl", "m.ndjson", "metrics.json"])
_EVENTS = "run/events.out.tfevents.1.host.0"
LOG_TARGETS = (
    Target("read_log.csv", "dldebug.curves", _log_case(csv_logs(), wild_csv(), _csv_names), _run(), 9000, 240,
           from_bytes=_raw_log("log.csv")),
    Target("read_log.jsonl", "dldebug.curves", _log_case(jsonl_logs(), wild_jsonl(), _jsonl_names), _run(), 9000,
           240, from_bytes=_raw_log("m.jsonl")),
    Target("read_log.trainer_state", "dldebug.curves",
           _log_case(trainer_states(), wild_trainer_state(), "checkpoint-10/trainer_state.json"), _run(), 8000, 180,
           from_bytes=_raw_log("trainer_state.json")),
    Target("read_log.lightning", "dldebug.curves", lightning_dirs(), _run(), 6000, 150,
           from_bytes=_raw_log("lightning_logs/version_0/metrics.csv", "lightning_logs")),
    Target("read_log.tensorboard", "dldebug.curves", tensorboard_dirs(), _run(), 6000, 150,
           from_bytes=_raw_log(_EVENTS, "run")),
)

__all__ = ["LOG_TARGETS"]
