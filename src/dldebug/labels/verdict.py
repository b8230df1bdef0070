"""Turn the label-alignment numbers into findings, the confusion figure and the mapping table."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dldebug.findings import Figure, Finding, Report, Severity, Table
from dldebug.labels.stats import HeldOut

__all__ = ["Evidence", "alignment_report"]

_OFFSET_SHARE = 0.9  # share of classes that must share one shift to call it an offset
_MAX_MATRIX = 64  # rows shown in the confusion figure
_SHOWN = 12  # moves named in a message


@dataclass(frozen=True)
class Evidence:
    """Everything the verdict rests on (computed by ``alignment._evidence``)."""

    confusion: np.ndarray
    best: np.ndarray
    moved: np.ndarray
    supported: int
    claimed: bool
    accuracy: float
    best_accuracy: float
    p_value: float
    p_chance: float
    consistency: float
    alpha: float
    held_out: HeldOut

    def common(self) -> dict[str, Any]:
        """Evidence every finding of this check carries."""
        return {"accuracy": round(self.accuracy, 6), "aligned_accuracy": round(self.best_accuracy, 6),
                "p_value": self.p_value, "moved_classes": len(self.moved), "num_classes": self.supported,
                "consistency": round(self.consistency, 4), "samples": int(self.confusion.sum()),
                "held_out_gained": self.held_out.gained, "held_out_lost": self.held_out.lost}


def _class_name(names: Sequence[str] | None, index: int) -> str:
    """The name of ``index``, or "" when there is none."""
    return str(names[index]) if names is not None and 0 <= index < len(names) else ""


def _name(names: Sequence[str] | None, index: int) -> str:
    """``"name (index)"``, or the bare index when there is no name."""
    name = _class_name(names, index)
    return f"{name} ({index})" if name else str(index)


def describe_moves(best: np.ndarray, moved: np.ndarray, dataset_classes: Sequence[str] | None,
                   model_classes: Sequence[str] | None) -> list[str]:
    """``"label -> model index"`` per moved class; a swapped pair reads ``"a <-> b"`` once."""
    moved_set = {int(i) for i in moved}
    out: list[str] = []
    seen: set[int] = set()
    for label in sorted(moved_set):
        if label in seen:
            continue
        target = int(best[label])
        if target in moved_set and int(best[target]) == label and model_classes is None:
            out.append(f"{_name(dataset_classes, label)} <-> {_name(dataset_classes, target)}")
            seen.update((label, target))
            continue
        out.append(f"{_name(dataset_classes, label)} -> model {_name(model_classes, target)}")
        seen.add(label)
    return out


def _offset(ev: Evidence) -> int | None:
    supported = np.flatnonzero((ev.confusion.sum(axis=1) > 0) & (ev.best >= 0))
    shifts = Counter(int(ev.best[i]) - int(i) for i in supported)
    shift, count = shifts.most_common(1)[0] if shifts else (0, 0)
    return shift if shift != 0 and count >= _OFFSET_SHARE * len(supported) else None


def _claim(ev: Evidence, dataset_classes: Sequence[str] | None, model_classes: Sequence[str] | None,
           names_agree: float | None) -> Finding:
    moves = describe_moves(ev.best, ev.moved, dataset_classes, model_classes)
    shown = "; ".join(moves[:_SHOWN]) + (f"; ... ({len(moves) - _SHOWN} more)" if len(moves) > _SHOWN else "")
    before_after = (f"accuracy {ev.accuracy:.1%} as given, {ev.best_accuracy:.1%} under the recovered mapping "
                    f"(held-out sign test p = {ev.p_value:.2g})")
    evidence: dict[str, Any] = {**ev.common(), "moves": moves[:200]}
    if names_agree is not None:
        evidence["names_agree"] = names_agree
    sorted_hint = (" The data-set classes are in sorted order: folder loaders (torchvision ImageFolder, "
                   "sorted(os.listdir())) number classes alphabetically, not in the model's training order."
                   if dataset_classes is not None and list(dataset_classes) == sorted(dataset_classes) else "")
    shift = _offset(ev)
    if shift is not None:
        evidence["offset"] = shift
        return Finding("labels.offset", Severity.ERROR,
                       f"Every label is shifted by {shift:+d} against the model's indices; {before_after}.",
                       evidence, lesson=9,
                       fix=f"Use model index = label {shift:+d}. A model with one extra output at index 0 "
                           "(a 'background' class, as in 1001-class TF-slim/TF-Hub ImageNet models) needs "
                           "logits[:, 1:] before argmax; otherwise add the offset to the labels.")
    if len(ev.moved) * 2 < ev.supported:
        return Finding("labels.partial", Severity.ERROR,
                       f"{len(ev.moved)} of {ev.supported} classes are swapped: {shown}; {before_after}.",
                       evidence, lesson=9,
                       fix="Fix the class order of the swapped classes only (the mapping table lists them); "
                           "check the label file or the folder names of exactly these classes." + sorted_hint)
    return Finding("labels.permuted", Severity.ERROR,
                   f"The model's class indices are permuted against the data set's labels: {len(ev.moved)} of "
                   f"{ev.supported} classes move; {before_after}.",
                   evidence, lesson=9,
                   fix="Evaluate with the recovered mapping (LabelAlignment.mapping, or dldebug labels --out "
                       "mapping.json) and number the classes in the model's training order." + sorted_hint)


def _inconclusive(ev: Evidence) -> Finding | None:
    if len(ev.moved):
        message = (f"Another class mapping fits better in-sample (accuracy {ev.accuracy:.1%} -> "
                   f"{ev.best_accuracy:.1%}), but the evidence does not support a misalignment: held-out sign "
                   f"test p = {ev.p_value:.2g} (needs < {ev.alpha:g}), {ev.consistency:.0%} of classes predicted "
                   "consistently (needs 50%). The model may be too weak to tell.")
    elif ev.p_chance >= ev.alpha:
        held = ev.held_out
        chance = held.expected_hits / held.samples if held.samples else 0.0
        message = (f"Accuracy {ev.accuracy:.1%} is not significantly above chance ({chance:.1%}, p = "
                   f"{ev.p_chance:.2g}) on {held.samples} samples: the check cannot tell whether the labels are "
                   "aligned.")
    else:
        return None
    return Finding("labels.inconclusive", Severity.INFO, message, {**ev.common(), "p_chance": ev.p_chance},
                   fix="Check alignment with a trained model, or with more samples per class.", lesson=9)


def _figure(confusion: np.ndarray, dataset_classes: Sequence[str] | None) -> Figure:
    rows = min(confusion.shape[0], _MAX_MATRIX)
    shown = confusion[:rows]
    if confusion.shape[1] > _MAX_MATRIX:
        columns = np.unique(np.concatenate([np.arange(min(rows, confusion.shape[1])),
                                            shown.argmax(axis=1)]))[:2 * _MAX_MATRIX]
        shown = shown[:, columns]
        cols_note = f" Columns: model indices {columns.tolist()[:8]}... (the diagonal and each row's top index)."
    else:
        cols_note = ""
    cut = f" First {rows} of {confusion.shape[0]} labels." if rows < confusion.shape[0] else ""
    names = "" if dataset_classes is None else f" Rows: {', '.join(map(str, dataset_classes[:rows][:10]))}..."
    return Figure("labels.confusion", title="Confusion: data-set label (rows) x model index (columns)",
                  matrix=tuple(tuple(r) for r in shown.tolist()), xlabel="model index", ylabel="data-set label",
                  caption="A well-aligned model puts its counts on the diagonal; a permuted one elsewhere."
                          + cut + cols_note + names)


def _table(confusion: np.ndarray, chosen: np.ndarray, dataset_classes: Sequence[str] | None,
           model_classes: Sequence[str] | None) -> Table:
    rows = []
    for label, index in enumerate(chosen.tolist()):
        given = int(confusion[label, label]) if label < confusion.shape[1] else 0
        mapped = int(confusion[label, index]) if index >= 0 else 0
        rows.append((label, _class_name(dataset_classes, label), index, _class_name(model_classes, index),
                     int(confusion[label].sum()), given, mapped, index != label))
    return Table("labels.mapping", ("dataset label", "dataset class", "model index", "model class", "samples",
                                    "hits as given", "hits mapped", "moved"), tuple(rows),
                 caption="The mapping in use: data-set label -> model index (-1: no model index left).")


def alignment_report(ev: Evidence, chosen: np.ndarray, name_findings: list[Finding],
                     dataset_classes: Sequence[str] | None, model_classes: Sequence[str] | None,
                     names: Any) -> Report:
    """The check's Report: findings first, then the confusion figure and the mapping table."""
    findings = []
    if ev.claimed:
        agree = None
        if names is not None and names.complete:
            agree = round(float(np.mean([a == b for a, b in zip(names.index_list, ev.best.tolist(),
                                                                    strict=True)])), 4)
        findings.append(_claim(ev, dataset_classes, model_classes, agree))
    else:
        extra = _inconclusive(ev)
        if extra is not None:
            findings.append(extra)
    findings.extend(name_findings)
    meta = {**ev.common(), "num_outputs": int(ev.confusion.shape[1])}
    return Report(findings, title="Label alignment", figures=(_figure(ev.confusion, dataset_classes),),
                  tables=(_table(ev.confusion, chosen, dataset_classes, model_classes),), meta=meta)
