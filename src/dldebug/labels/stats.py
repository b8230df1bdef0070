"""The statistics behind the label-alignment check: confusion, assignment and held-out tests.

Pure numpy/scipy on integer arrays; no findings, no torch. ``alignment.py``
turns these numbers into a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import bdtrc

__all__ = ["HeldOut", "best_mapping", "binomial_tail", "confusion_matrix", "cross_fit", "mutual_dominance"]


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int, num_outputs: int) -> np.ndarray:
    """Counts ``C[label, predicted]`` as a (num_classes, num_outputs) int64 matrix.

    Example:
        >>> confusion_matrix(np.array([0, 1, 1]), np.array([1, 0, 0]), 2, 2).tolist()
        [[0, 1], [2, 0]]
    """
    flat = labels.astype(np.int64) * num_outputs + predicted.astype(np.int64)
    return np.bincount(flat, minlength=num_classes * num_outputs).reshape(num_classes, num_outputs)


def best_mapping(confusion: np.ndarray) -> np.ndarray:
    """Model index for each data-set label that maximises the matched count (-1: no column left).

    Solves the assignment problem on the confusion matrix, so two labels never
    share a model index. Ties are broken in favour of the given index.

    Example:
        >>> best_mapping(np.array([[0, 5], [4, 1]])).tolist()
        [1, 0]
    """
    # A bonus below one count in total for each label kept at its own index: among assignments that
    # match equally many samples, the one closest to the given indices wins (no move without evidence).
    k, m = confusion.shape
    weights = confusion.astype(np.float64)
    diagonal = np.arange(min(k, m))
    weights[diagonal, diagonal] += 1.0 / (k + 1)
    rows, cols = linear_sum_assignment(weights, maximize=True)
    mapping = np.full(confusion.shape[0], -1, dtype=np.int64)
    mapping[rows] = cols
    return mapping


def binomial_tail(successes: int, trials: int, probability: float) -> float:
    """``P(X >= successes)`` for ``X ~ Binomial(trials, probability)`` (exact).

    Example:
        >>> round(binomial_tail(9, 10, 0.5), 5)
        0.01074
    """
    if successes <= 0:
        return 1.0
    if successes > trials:
        return 0.0
    return float(bdtrc(successes - 1, trials, min(max(probability, 0.0), 1.0)))


def mutual_dominance(confusion: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """True for each label whose mapped cell is the largest of its row and of its column (and > 0).

    A competent model, permuted or not, predicts each class mostly as one index
    and each index mostly for one class; a near-chance model does not.
    """
    result = np.zeros(confusion.shape[0], dtype=bool)
    assigned = np.flatnonzero(mapping >= 0)
    cells = confusion[assigned, mapping[assigned]]
    row_max = confusion[assigned].max(axis=1)
    col_max = confusion[:, mapping[assigned]].max(axis=0)
    result[assigned] = (cells > 0) & (cells >= row_max) & (cells >= col_max)
    return result


@dataclass(frozen=True)
class HeldOut:
    """Counts from two-fold cross-fitting: each fold judged by the mapping fitted on the other.

    Attributes:
        gained: samples right under the held-out mapping but wrong as given.
        lost: samples right as given but wrong under the held-out mapping.
        hits: samples right under the held-out mapping.
        expected_hits: hits expected if predictions were independent of labels.
        samples: samples judged.
    """

    gained: int
    lost: int
    hits: int
    expected_hits: float
    samples: int

    @property
    def p_misaligned(self) -> float:
        """Exact one-sided sign test (McNemar) that the mapping beats the given indices."""
        return binomial_tail(self.gained, self.gained + self.lost, 0.5)

    @property
    def p_chance(self) -> float:
        """One-sided binomial test that the mapped accuracy beats chance."""
        if self.samples == 0:
            return 1.0
        return binomial_tail(self.hits, self.samples, self.expected_hits / self.samples)


def cross_fit(labels: np.ndarray, predicted: np.ndarray, num_classes: int, num_outputs: int,
              *, seed: int = 0) -> HeldOut:
    """Fit the mapping on one half of the samples and judge it on the other, both ways.

    The in-sample assignment always looks better than the given indices (it is
    chosen to), even for pure noise; counts on held-out samples do not share
    that bias, so the sign test on them is a fair significance measure.
    """
    folds = np.random.default_rng(seed).permutation(len(labels)) % 2
    gained = lost = hits = 0
    expected = 0.0
    for fold in (0, 1):
        fit, judge = folds != fold, folds == fold
        mapping = best_mapping(confusion_matrix(labels[fit], predicted[fit], num_classes, num_outputs))
        y, p = labels[judge], predicted[judge]
        mapped = mapping[y]
        right_mapped = p == mapped
        right_given = p == y
        gained += int(np.count_nonzero(right_mapped & ~right_given))
        lost += int(np.count_nonzero(right_given & ~right_mapped))
        hits += int(np.count_nonzero(right_mapped))
        label_counts = np.bincount(y, minlength=num_classes).astype(np.float64)
        pred_share = np.bincount(p, minlength=num_outputs) / max(len(p), 1)
        valid = mapping >= 0
        expected += float(label_counts[valid] @ pred_share[mapping[valid]])
    return HeldOut(gained, lost, hits, expected, len(labels))
