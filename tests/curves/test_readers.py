"""Log readers on real files: CSV, JSON lines, TensorBoard, Lightning CSVLogger, HF trainer_state.json."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dldebug import DldebugError, FileFormatError, InputError, MissingDependencyError
from dldebug.curves import detect_format, diagnose_log, find_runs, read_log, read_runs


def assert_plateau(report, onset: int, steps: np.ndarray) -> None:
    plateau = report.get("loss.plateau")
    assert plateau is not None, report.findings
    assert plateau.evidence["start_step"] == int(steps[0])
    assert abs(plateau.evidence["end_step"] - onset) <= 0.05 * onset


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# -- CSV and JSON lines ----------------------------------------------------------------------------------
def test_csv_any_column_with_step_and_text_columns(tmp_path: Path, plateau_curve) -> None:
    steps, values, onset = plateau_curve
    rows = [[int(s), "train", float(v), float(1 - v / 2.5)] for s, v in zip(steps, values, strict=True)]
    path = write_csv(tmp_path / "log.csv", ["step", "phase", "train_loss", "acc"], rows)
    log = read_log(path)
    assert (log.format, log.metrics) == ("csv", ["train_loss", "acc"])
    np.testing.assert_array_equal(log.curve().steps, steps)
    np.testing.assert_allclose(log.curve("acc").values, 1 - values / 2.5)
    assert_plateau(diagnose_log(path), onset, steps)
    assert diagnose_log(path, "acc").get("loss.plateau").evidence["mode"] == "max"


def test_csv_without_step_column_uses_row_index(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "x.csv", ["loss"], [[2.3]] * 20)
    curve = read_log(path).curve()
    np.testing.assert_array_equal(curve.steps, np.arange(20))
    assert diagnose_log(path).has("loss.stuck")


def test_jsonl_with_nested_values_and_missing_keys(tmp_path: Path, plateau_curve) -> None:
    steps, values, onset = plateau_curve
    lines = []
    for i, (s, v) in enumerate(zip(steps, values, strict=True)):
        record = {"step": int(s), "train": {"loss": float(v)}, "note": "ok"}
        if i % 10 == 0:
            record["val_loss"] = float(v) + 0.1
        lines.append(json.dumps(record))
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(lines) + "\n")
    log = read_log(path)
    assert log.format == "jsonl" and log.metrics == ["train/loss", "val_loss"]
    assert len(log.curve("val_loss")) == 40
    assert_plateau(diagnose_log(path), onset, steps)


# -- real frameworks -------------------------------------------------------------------------------------
def test_lightning_csvlogger_metrics_csv(tmp_path: Path, plateau_curve) -> None:
    pytest.importorskip("lightning")
    from lightning.pytorch.loggers import CSVLogger

    steps, values, onset = plateau_curve
    logger = CSVLogger(save_dir=str(tmp_path), name="run")
    for i, (s, v) in enumerate(zip(steps, values, strict=True)):
        logger.log_metrics({"train_loss_step": float(v)}, step=int(s))
        if i % 50 == 49:
            logger.log_metrics({"val_loss": float(v) + 0.1, "val_acc": 0.5, "epoch": i // 50}, step=int(s))
    logger.save()
    logger.finalize("success")
    log = read_log(tmp_path)  # the directory: finds run/version_0/metrics.csv
    assert log.format == "lightning" and log.path == tmp_path
    assert set(log.metrics) == {"train_loss_step", "val_loss", "val_acc"}  # epoch and step are not metrics
    assert len(log.curve("val_loss")) == 8 and len(log.curve()) == len(values)
    assert_plateau(diagnose_log(tmp_path), onset, steps)
    with pytest.raises(InputError, match="'epoch'; it is a step/epoch/index column, not a metric"):
        diagnose_log(tmp_path, "epoch")


def test_huggingface_trainer_state(tmp_path: Path, plateau_curve) -> None:
    pytest.importorskip("transformers")
    from transformers import TrainerState

    steps, values, onset = plateau_curve
    state = TrainerState(global_step=int(steps[-1]))
    state.log_history = [{"loss": float(v), "learning_rate": 1e-3, "epoch": s / 1000, "step": int(s)}
                         for s, v in zip(steps, values, strict=True)]
    state.log_history.append({"eval_loss": 0.3, "eval_accuracy": 0.9, "epoch": 4.0, "step": int(steps[-1])})
    checkpoint = tmp_path / "checkpoint-4000"
    checkpoint.mkdir()
    state.save_to_json(str(checkpoint / "trainer_state.json"))
    log = read_log(tmp_path)
    assert log.format == "hf_trainer_state"
    assert set(log.metrics) == {"loss", "learning_rate", "eval_loss", "eval_accuracy"}
    np.testing.assert_array_equal(log.curve().steps, steps)
    assert_plateau(diagnose_log(checkpoint / "trainer_state.json"), onset, steps)


def test_tensorboard_event_directory(tensorboard_logs, plateau_curve) -> None:
    steps, values, onset = plateau_curve
    log = read_log(tensorboard_logs.single)
    assert log.format == "tensorboard" and log.metrics == ["train/loss", "accuracy"]
    np.testing.assert_allclose(log.curve().values, values.astype(np.float32))  # TensorBoard stores float32
    np.testing.assert_array_equal(log.curve().steps, steps)
    assert_plateau(diagnose_log(tensorboard_logs.single), onset, steps)
    accuracy = diagnose_log(tensorboard_logs.single, "accuracy")
    assert accuracy.get("loss.plateau").evidence["mode"] == "max"


def test_tensorboard_tensor_scalars(tensorboard_logs, plateau_curve) -> None:
    steps, values, _ = plateau_curve
    curve = read_log(tensorboard_logs.tensors).curve()
    np.testing.assert_array_equal(curve.steps, steps)
    np.testing.assert_allclose(curve.values, values.astype(np.float32))


def test_tensorboard_runs_are_judged_one_by_one(tensorboard_logs) -> None:
    with pytest.raises(FileFormatError, match=r"holds 2 runs: a \(tensorboard\), b \(tensorboard\)"):
        read_log(tensorboard_logs.multi)
    logs = read_runs(tensorboard_logs.multi)
    assert {name: len(log.curve()) for name, log in logs.items()} == {"a": 400, "b": 50}
    report = diagnose_log(tensorboard_logs.multi)
    assert [s.meta["run"] for s in report.sections] == ["a", "b"] and report.meta["runs"] == ["a", "b"]
    assert report.sections[0].has("loss.plateau")  # run a holds the whole plateau-then-fall curve
    assert not report.sections[1].has("loss.plateau")  # run b stops on the plateau (50 points)
    assert {f.name for s in report.sections for f in s.figures} == {"curve: a", "curve: b"}


def test_tensorboard_missing_dependency(tensorboard_logs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'dldebug\[tensorboard\]'"):
        read_log(tensorboard_logs.single)


# -- damaged logs ----------------------------------------------------------------------------------------
def test_truncated_csv_names_file_and_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "log.csv", ["step", "loss", "acc"], [[i, 2.0, 0.1] for i in range(30)])
    text = path.read_text()
    path.write_text(text[: text.index("20,2.0,0.1") + 4])  # cut inside line 22
    with pytest.raises(FileFormatError) as info:
        read_log(path)
    assert str(info.value) == (f"{path}, line 22: row has 2 fields but the header has 3 (truncated or corrupt "
                               "row). Pass partial=True (--partial) to analyse what was read before it.")
    assert info.value.line == 22
    log = read_log(path, partial=True)
    assert len(log.curve()) == 20 and log.damage.line == 22
    report = diagnose_log(path, partial=True)
    truncated = report.get("log.truncated")
    assert truncated.evidence["line"] == 22 and truncated.evidence["points_read"] == 20
    assert truncated.evidence["last_step"] == 19 and report.has("loss.stuck")


def test_non_number_in_numeric_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "log.csv", ["step", "loss"], [[0, 1.0], [1, "oops"], [2, 0.5]])
    with pytest.raises(FileFormatError, match=r"log.csv, line 3: value 'oops' in column 'loss' is not a number"):
        read_log(path)


def test_binary_garbage(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"step,loss\n0,1.0\n\xff\xfe\x00garbage\n")
    with pytest.raises(FileFormatError, match=r"model.bin, line 3: not UTF-8 text"):
        read_log(path)


def test_truncated_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps({"step": i, "loss": 1.0 / (i + 1)}) + "\n" for i in range(12))[:-9])
    with pytest.raises(FileFormatError, match=r"log.jsonl, line 12: not valid JSON \("):
        read_log(path)
    assert len(read_log(path, partial=True).curve()) == 11


def test_truncated_trainer_state_keeps_complete_entries(tmp_path: Path) -> None:
    history = [{"loss": 2.0 - i / 100, "step": 10 * i, "epoch": i / 10} for i in range(30)]
    text = json.dumps({"global_step": 300, "log_history": history, "best_metric": None}, indent=2)
    path = tmp_path / "trainer_state.json"
    path.write_text(text[: text.index('"step": 200') + 5])
    with pytest.raises(FileFormatError) as info:
        read_log(path)
    assert str(info.value).startswith(f"{path}, line ")
    assert "invalid JSON in 'log_history' entry 20" in str(info.value)
    log = read_log(path, partial=True)
    assert len(log.curve()) == 20 and log.curve().steps[-1] == 190


def test_truncated_and_corrupt_event_files(tensorboard_logs, tmp_path: Path) -> None:
    source = next(tensorboard_logs.single.glob("events.out.tfevents.*"))
    data = source.read_bytes()
    cut = tmp_path / "cut" / source.name
    cut.parent.mkdir()
    cut.write_bytes(data[:-7])
    with pytest.raises(FileFormatError, match=r"cut/events.out.tfevents.*: record 801 at byte \d+: truncated record"):
        read_log(cut.parent)
    partial = read_log(cut.parent, partial=True)
    assert (len(partial.curve()), len(partial.curve("accuracy"))) == (400, 399)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad" / source.name
    bad.parent.mkdir()
    bad.write_bytes(bytes(flipped))
    with pytest.raises(FileFormatError, match=r"record \d+ at byte \d+: corrupt record (data|length) \(CRC"):
        read_log(bad)
    partial = read_log(bad, partial=True)
    # every record before the damaged one was read: the file-version record, then one scalar each
    points = sum(len(c) for c in partial.curves.values())
    assert points == partial.damage.line - 2 and 0 < points < 800


# -- detection and metric choice ------------------------------------------------------------------------
def test_format_detection(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("step,loss\n0,1\n")
    (tmp_path / "b.log").write_text('{"step": 0, "loss": 1}\n')
    (tmp_path / "state.json").write_text('{"log_history": [{"step": 0, "loss": 1}]}')
    (tmp_path / "records.json").write_text('[{"step": 0, "loss": 1}, {"step": 5, "loss": 0.5}]')
    assert read_log(tmp_path / "records.json").curve().steps.tolist() == [0, 5]
    assert detect_format(tmp_path / "a.csv")[0] == "csv"
    assert detect_format(tmp_path / "b.log")[0] == "jsonl"
    assert detect_format(tmp_path / "state.json")[0] == "hf_trainer_state"
    with pytest.raises(FileFormatError, match="no training log found in this directory"):
        detect_format(tmp_path)
    with pytest.raises(FileFormatError, match=r"nope.csv: no such file or directory"):
        read_log(tmp_path / "nope.csv")


def test_metric_choice_and_errors(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", ["step", "val_loss", "acc", "train/loss"], [[0, 1, 0.1, 2], [1, 1, 0.2, 2]])
    assert read_log(path).curve().name == "train/loss"
    with pytest.raises(InputError) as info:
        read_log(path).curve("loss")
    assert str(info.value) == f"{path}: no metric named 'loss'; available metrics: val_loss, acc, train/loss."
    only_acc = write_csv(tmp_path / "acc.csv", ["epoch", "acc", "f1"], [[0, 0.1, 0.2]])
    with pytest.raises(InputError) as info:
        diagnose_log(only_acc)
    assert str(info.value) == (f"{only_acc}: no loss-like metric found; available metrics: acc, f1. "
                               "Pick one with --metric NAME (metric=...).")


def test_empty_log(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(FileFormatError, match="empty.csv, line 1: empty file: expected a CSV header line"):
        read_log(path)
    header_only = write_csv(tmp_path / "h.csv", ["step", "loss"], [])
    with pytest.raises(FileFormatError, match="no numeric metric could be read"):
        read_log(header_only)


def test_resumed_run_overlapping_steps_later_wins(tmp_path: Path) -> None:
    rows = [[s, 2.0 - s / 10] for s in range(10)] + [[s, 1.5 - s / 10] for s in range(5, 12)]
    path = write_csv(tmp_path / "r.csv", ["step", "loss"], rows)
    curve = read_log(path).curve()
    assert curve.steps.tolist() == list(range(12))
    assert curve.values[4:7].tolist() == [1.6, 1.0, 0.9]  # steps 5.. come from the resumed run
    assert (curve.overlap.count, curve.overlap.first_step, curve.overlap.last_step) == (5, 5, 9)
    overlap = diagnose_log(path).get("log.overlapping_steps")
    assert overlap is not None and overlap.severity.value == "info"
    assert "5 step(s) of loss were logged more than once (steps 5 to 9)" in overlap.message
    assert "later values" in overlap.message


def test_copy_of_directory_is_not_needed(tmp_path: Path, tensorboard_logs) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tensorboard_logs.single, copy)
    assert read_log(copy / next(copy.iterdir()).name).format == "tensorboard"


@pytest.mark.parametrize("content", [
    b"\xef\xbb\xbfstep,loss\r\n0,2.3\r\n1,2.2\r\n",  # Excel: BOM and CRLF
    b"step\tloss\n0\t2.3\n1\t2.2\n",  # TSV
    b'"step","loss"\n"0","2.3"\n\n"1","2.2"',  # quoted cells, blank line, no final newline
])
def test_csv_dialects(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(content)
    curve = read_log(path).curve()
    assert (curve.name, curve.steps.tolist(), curve.values.tolist()) == ("loss", [0, 1], [2.3, 2.2])


_VALID_LOGS = {
    "log.csv": b"step,loss\n0,1.0\n1,0.5\n2,0.25\n",
    "log.jsonl": b'{"step": 0, "loss": 1}\n{"step": 1, "loss": 0.5}\n',
    "trainer_state.json": b'{"log_history": [{"step": 0, "loss": 1.0}, {"step": 1, "loss": 0.5}], "x": 1}',
    "records.json": b'[{"step": 0, "loss": 1}, {"step": 1, "loss": 0.5}]',
}


@settings(max_examples=150, deadline=None, derandomize=True)
@given(name=st.sampled_from(sorted(_VALID_LOGS)), cut=st.floats(0, 1), position=st.floats(0, 1),
       junk=st.binary(max_size=6), partial=st.booleans())
def test_damaged_bytes_give_only_dldebug_errors(tmp_path_factory: pytest.TempPathFactory, name: str, cut: float,
                                                position: float, junk: bytes, partial: bool) -> None:
    data = _VALID_LOGS[name]
    data = data[: int(cut * len(data))] if cut < 0.5 else data
    at = int(position * len(data))
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(data[:at] + junk + data[at:])
    try:
        report = diagnose_log(path, partial=partial)
    except DldebugError:
        return
    assert report.meta["format"] in ("csv", "jsonl", "hf_trainer_state")


def test_stray_carriage_return_is_damage(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(b"step,loss\n0,1.0\n1,0.\r5\n")
    with pytest.raises(FileFormatError, match=r"log.csv, line 3: not a CSV row"):
        read_log(path)


# -- issue 14: what a log holds besides its metrics ----------------------------------------------------
def test_tensorboard_ui_csv_export_needs_no_options(tmp_path: Path, plateau_curve) -> None:
    steps, values, onset = plateau_curve
    rows = [[1.7e9 + i, int(s), float(v)] for i, (s, v) in enumerate(zip(steps, values, strict=True))]
    named = write_csv(tmp_path / "run-version_0-tag-train_loss.csv", ["Wall time", "Step", "Value"], rows)
    log = read_log(named)
    assert log.metrics == ["train_loss"]  # the tag, from TensorBoard's file name; Wall time is no metric
    assert_plateau(diagnose_log(named), onset, steps)
    plain = write_csv(tmp_path / "export.csv", ["Wall time", "Step", "Value"], rows)
    assert read_log(plain).metrics == ["Value"] and diagnose_log(plain).has("loss.plateau")  # the only metric


def test_index_and_epoch_columns_are_never_metrics(tmp_path: Path) -> None:
    rows = [[i, i, i // 5, 2.3 - 0.01 * i] for i in range(40)]
    pandas_style = write_csv(tmp_path / "p.csv", ["", "step", "epoch", "loss"], rows)
    assert read_log(pandas_style).metrics == ["loss"]
    unnamed = write_csv(tmp_path / "u.csv", ["Unnamed: 0", "epoch", "loss"], [r[1:] for r in rows])
    assert read_log(unnamed).metrics == ["loss"]
    lines = [json.dumps({"step": i, "epoch": i // 5, "index": i, "loss": 2.3 - 0.01 * i}) for i in range(40)]
    (tmp_path / "m.jsonl").write_text("\n".join(lines))
    assert read_log(tmp_path / "m.jsonl").metrics == ["loss"]


def trainer_state(path: Path, entries: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"global_step": max(e["step"] for e in entries), "log_history": entries}))
    return path


def test_trainer_state_nan_filter_zeros_are_nonfinite(tmp_path: Path) -> None:
    entries = [{"loss": 0.69 - 0.01 * s, "grad_norm": 0.3, "learning_rate": 1e-3, "step": s} for s in range(1, 13)]
    entries += [{"loss": 0.0, "grad_norm": float("nan"), "learning_rate": 1e-3, "step": s} for s in range(13, 30)]
    path = trainer_state(tmp_path / "trainer_state.json", entries)
    report = diagnose_log(path)
    nonfinite = report.get("loss.nonfinite")
    assert nonfinite is not None and not report.has("loss.stuck")
    assert (nonfinite.evidence["first_step"], nonfinite.evidence["hidden_by_nan_filter"]) == (13, 17)
    assert "NaN filter (logging_nan_inf_filter=True, the default) hid it" in nonfinite.message
    # a real 0.0 loss (grad_norm finite) is no NaN, and neither is an fp16 overflow step (loss finite)
    fine = [dict(e, grad_norm=0.1) for e in entries]
    assert not diagnose_log(trainer_state(tmp_path / "b" / "trainer_state.json", fine)).has("loss.nonfinite")


def test_learning_rate_in_the_log_explains_a_plateau(tmp_path: Path, families) -> None:
    curve, begin, stop = families.midrun_plateau(600, 0.4, 0.25, 0.02, seed=3)
    entries = [{"loss": float(v), "learning_rate": 0.0 if begin <= s < stop else 1e-3, "step": s}
               for s, v in enumerate(curve)]
    report = diagnose_log(trainer_state(tmp_path / "trainer_state.json", entries))
    plateau = report.get("loss.plateau")
    assert plateau is not None and plateau.severity.value == "warning"
    assert (plateau.evidence["start_step"], plateau.evidence["end_step"]) == (begin, stop - 1)
    assert plateau.evidence["lr_cause"] == "zero" and "learning rate was ~0 there" in plateau.message
    assert report.meta["lr_metric"] == "learning_rate"
    unexplained = diagnose_log(tmp_path / "trainer_state.json", lr_metric=None).get("loss.plateau")
    assert unexplained is not None and "lr_cause" not in unexplained.evidence


def test_hugging_face_output_dirs_are_runs(tmp_path: Path) -> None:
    healthy = [{"loss": 2.3 * 0.97 ** s + 0.1, "step": s} for s in range(1, 60)]
    flat = [{"loss": 2.3, "step": s} for s in range(1, 60)]
    trainer_state(tmp_path / "a" / "checkpoint-20" / "trainer_state.json", healthy[:20])
    trainer_state(tmp_path / "a" / "checkpoint-59" / "trainer_state.json", healthy)  # the latest holds it all
    trainer_state(tmp_path / "b" / "trainer_state.json", flat)
    assert [(r.name, r.files[0].parent.name) for r in find_runs(tmp_path)] == [("a", "checkpoint-59"), ("b", "b")]
    report = diagnose_log(tmp_path)
    assert [(s.meta["run"], [f.check for f in s.findings]) for s in report.sections] == [
        ("a", []), ("b", ["loss.stuck"])]
    with pytest.raises(FileFormatError, match=r"holds 2 runs: a \(hf_trainer_state\), b \(hf_trainer_state\)"):
        read_log(tmp_path)
    assert read_log(tmp_path / "a").curve().steps[-1] == 59  # one run's folder reads as before


def test_integers_beyond_a_float_are_infinite(tmp_path: Path) -> None:  # crash C1 of the reliability fuzzer
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps({"step": s, "loss": v}) for s, v in enumerate([10**400, 1, -10**400])))
    assert read_log(path).curve().values.tolist() == [np.inf, 1.0, -np.inf]
    entries = [{"step": 1, "loss": 10**400}, {"step": 2, "loss": 1}]
    state = trainer_state(tmp_path / "hf" / "trainer_state.json", entries)
    assert read_log(state).curve().values.tolist() == [np.inf, 1.0]


def test_scalar_tensor_shorter_than_one_element_is_skipped(tmp_path: Path) -> None:  # crash C2
    pytest.importorskip("tensorboard")
    import struct

    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    short, fine = event_pb2.Event(step=1), event_pb2.Event(step=2)
    value = short.summary.value.add(tag="loss")
    value.tensor.dtype, value.tensor.tensor_content = 1, b"\x00\x00\x80"  # 3 bytes for a float32
    fine.summary.value.add(tag="loss").simple_value = 0.5
    data = b""
    for event in (short, fine):
        payload = event.SerializeToString()
        header = struct.pack("<Q", len(payload))
        data += header + struct.pack("<I", masked_crc32c(header)) + payload + struct.pack("<I", masked_crc32c(payload))
    path = tmp_path / "events.out.tfevents.1.host"
    path.write_bytes(data)
    curve = read_log(path).curve()
    assert (curve.steps.tolist(), curve.values.tolist()) == ([2], [0.5])
