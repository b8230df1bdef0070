"""Detect a model whose class indices are permuted, shifted or renamed against a data set (lesson 9).

The check builds the confusion matrix (data-set label x model index), finds
the one-to-one mapping that explains the most predictions
(``scipy.optimize.linear_sum_assignment``), and claims a misalignment only when
that mapping beats the given indices on *held-out* samples (an exact sign test)
and the model predicts most classes consistently under it, so a weak model's
noise is never called a permutation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dldebug.arguments import integer, real
from dldebug.findings import Finding, Report, Severity, plain
from dldebug.labels.inputs import as_class_names, as_labels, as_predicted_indices, resolve_sizes
from dldebug.labels.names import compare_class_names, name_findings
from dldebug.labels.stats import HeldOut, best_mapping, confusion_matrix, cross_fit, mutual_dominance
from dldebug.labels.verdict import Evidence, alignment_report
from dldebug.model_io import OutputSpec

__all__ = ["LabelAlignment", "check_label_alignment"]

_SCHEMA = "dldebug.label-mapping/1"


@dataclass(frozen=True)
class LabelAlignment:
    """The result of :func:`check_label_alignment`; truthy when no error was found.

    Attributes:
        accuracy: accuracy with the labels as given (model index == data-set label).
        aligned_accuracy: accuracy under :attr:`mapping`.
        mapping: data-set label -> model index. The recovered mapping when a misalignment is
            claimed, else the name-based one when the names disagree, else the identity.
        report: findings (``labels.permuted``, ``labels.offset``, ``labels.partial``,
            ``labels.order_mismatch``, ``labels.name_mismatch``, ``labels.inconclusive``), the
            confusion matrix as a figure and the mapping table.
        confusion: counts, rows = data-set labels, columns = model indices.
        best_mapping: the assignment that fits these predictions best, claimed or not.
        p_value: held-out sign test that ``best_mapping`` beats the given indices.
        consistency: share of classes whose mapped cell dominates its row and column.
        chance_accuracy: accuracy :attr:`mapping` would reach if predictions ignored the input.
    """

    accuracy: float
    aligned_accuracy: float
    mapping: dict[int, int]
    report: Report
    confusion: np.ndarray = field(repr=False)
    best_mapping: dict[int, int] = field(repr=False)
    p_value: float = 1.0
    consistency: float = 0.0
    chance_accuracy: float = 0.0
    dataset_classes: tuple[str, ...] | None = field(default=None, repr=False)
    model_classes: tuple[str, ...] | None = field(default=None, repr=False)

    def __bool__(self) -> bool:
        return self.report.ok

    @property
    def index_list(self) -> list[int]:
        """Model index for each data-set label in order (-1 where the model has none)."""
        return [self.mapping.get(label, -1) for label in range(self.confusion.shape[0])]

    def to_dict(self) -> dict[str, Any]:
        """The mapping as plain JSON values, ready to use in an evaluation script."""
        verdict = next((f.check for f in self.report.findings if f.severity is Severity.ERROR), "aligned")
        document: dict[str, Any] = {
            "schema": _SCHEMA,
            "usage": "model_index = index_list[dataset_label]; dataset_label = index_list.index(model_index)",
            "verdict": verdict,
            "mapping": {str(k): v for k, v in self.mapping.items()},
            "index_list": self.index_list,
            "accuracy": self.accuracy,
            "aligned_accuracy": self.aligned_accuracy,
            "p_value": self.p_value,
        }
        if self.dataset_classes is not None:
            document["dataset_classes"] = list(self.dataset_classes)
            document["class_to_idx"] = {name: self.mapping[label] for label, name in
                                        enumerate(self.dataset_classes) if label in self.mapping}
        if self.model_classes is not None:
            document["model_classes"] = list(self.model_classes)
        return plain(document)

    def save_mapping(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON atomically; returns the path."""
        from dldebug.report.atomic import write_text_atomic

        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")


def check_label_alignment(
    predictions: Any,
    labels: Any,
    *,
    num_classes: int | None = None,
    dataset_classes: Sequence[str] | None = None,
    model_classes: Sequence[str] | None = None,
    alpha: float = 1e-3,
    seed: int = 0,
    output: OutputSpec = None,
) -> LabelAlignment:
    """Check that a model's class indices mean the same classes as a data set's labels.

    Args:
        predictions: (N, M) logits or probabilities, or (N,) predicted model indices (numpy or torch),
            or a model's structured output holding the logits (a Hugging Face ``ImageClassifierOutput``).
        labels: (N,) data-set labels in ``[0, num_classes)``.
        num_classes: number of data-set classes (default: ``len(dataset_classes)`` or ``max(labels) + 1``).
        dataset_classes: the data set's class names, label order (e.g. :func:`folder_classes`).
        model_classes: the model's own class names, output order; enables the name-level check.
        alpha: significance level of the held-out test; a misalignment needs ``p < alpha``.
        seed: seed of the two-fold split used by the held-out test.
        output: which tensor of a structured ``predictions`` holds the logits (a key/attribute name, an
            index or a callable; default ``logits``, else the first tensor).

    Returns:
        A :class:`LabelAlignment`; ``result.report`` holds the findings.

    Raises:
        InputError: mismatched lengths, empty input, NaN predictions, labels out of range, class-name
            lists that are not lists of names or whose length disagrees with the data, an ``alpha``,
            ``seed`` or ``num_classes`` of the wrong type or range, or sizes far beyond what the data
            show (``num_classes`` more than 10x the classes the data reach, or a confusion matrix
            above 50,000,000 cells, about 7,000 x 7,000 classes).

    Example:
        >>> import numpy as np
        >>> labels = np.repeat(np.arange(5), 20)
        >>> swapped = np.array([1, 0, 2, 3, 4])[labels]  # a model that learnt classes 0 and 1 swapped
        >>> result = check_label_alignment(swapped, labels)
        >>> result.accuracy, result.aligned_accuracy, result.mapping
        (0.6, 1.0, {0: 1, 1: 0, 2: 2, 3: 3, 4: 4})
        >>> [f.check for f in result.report]
        ['labels.partial']
    """
    alpha = real(alpha, "alpha must lie in (0, 1)", low=0.0, high=1.0)
    seed = integer(seed, "seed must be a non-negative integer", low=0)
    dataset_classes = as_class_names(dataset_classes, "dataset_classes")
    model_classes = as_class_names(model_classes, "model_classes")
    predicted, outputs = as_predicted_indices(predictions, output)
    truth = as_labels(labels)
    sizes = resolve_sizes(predicted, outputs, truth, num_classes, dataset_classes, model_classes)
    k, m = sizes
    confusion = confusion_matrix(truth, predicted, k, m)
    best = best_mapping(confusion)
    held = cross_fit(truth, predicted, k, m, seed=seed)
    evidence = _evidence(confusion, best, held, alpha)
    findings: list[Finding] = []
    names = None
    if dataset_classes is not None and model_classes is not None:
        names = compare_class_names(dataset_classes, model_classes)
        findings.extend(name_findings(names, dataset_classes, model_classes))
    chosen = best if evidence.claimed else _fallback_mapping(k, m, names)
    report = alignment_report(evidence, chosen, findings, dataset_classes, model_classes, names)
    samples = len(truth)
    mapping = {int(label): int(index) for label, index in enumerate(chosen) if index >= 0}
    return LabelAlignment(
        accuracy=evidence.accuracy,
        aligned_accuracy=_accuracy(confusion, chosen, samples),
        mapping=mapping,
        report=report,
        confusion=confusion,
        best_mapping={int(label): int(index) for label, index in enumerate(best) if index >= 0},
        p_value=evidence.p_value,
        consistency=evidence.consistency,
        chance_accuracy=_chance(confusion, chosen, samples),
        dataset_classes=dataset_classes,
        model_classes=model_classes,
    )


def _accuracy(confusion: np.ndarray, mapping: np.ndarray, samples: int) -> float:
    valid = np.flatnonzero(mapping >= 0)
    return float(confusion[valid, mapping[valid]].sum() / samples)


def _chance(confusion: np.ndarray, mapping: np.ndarray, samples: int) -> float:
    label_share = confusion.sum(axis=1) / samples
    pred_share = confusion.sum(axis=0) / samples
    valid = np.flatnonzero(mapping >= 0)
    return float(label_share[valid] @ pred_share[mapping[valid]])


def _fallback_mapping(k: int, m: int, names: Any) -> np.ndarray:
    """The name-based mapping when complete, else the identity (-1 past the model's outputs)."""
    if names is not None and names.complete and not names.in_order:
        return np.array(names.index_list, dtype=np.int64)
    identity = np.arange(k, dtype=np.int64)
    identity[identity >= m] = -1
    return identity


_MIN_CONSISTENCY = 0.5  # share of classes a model must predict consistently before a permutation is claimed


def _evidence(confusion: np.ndarray, best: np.ndarray, held: HeldOut, alpha: float) -> Evidence:
    samples = int(confusion.sum())
    supported = confusion.sum(axis=1) > 0
    labels = np.arange(len(best))
    moved = np.flatnonzero(supported & (best >= 0) & (best != labels))
    dominant = mutual_dominance(confusion, best)
    consistency = float(dominant[supported].mean()) if supported.any() else 0.0
    p_value = held.p_misaligned
    claimed = len(moved) > 0 and p_value < alpha and consistency >= _MIN_CONSISTENCY
    diagonal = np.arange(min(confusion.shape))
    return Evidence(
        confusion=confusion, best=best, moved=moved, supported=int(supported.sum()), claimed=claimed,
        accuracy=float(confusion[diagonal, diagonal].sum() / samples),
        best_accuracy=_accuracy(confusion, best, samples),
        p_value=p_value, p_chance=held.p_chance, consistency=consistency, alpha=alpha,
        held_out=held,
    )
