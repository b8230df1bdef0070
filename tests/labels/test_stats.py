"""The statistics: confusion matrix, assignment and the held-out sign test, against naive oracles."""

from __future__ import annotations

import doctest
import itertools
import math

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion

import dldebug.labels.alignment
import dldebug.labels.folders
import dldebug.labels.inputs
import dldebug.labels.names
import dldebug.labels.stats
from dldebug.labels.stats import best_mapping, binomial_tail, confusion_matrix, cross_fit, mutual_dominance


@pytest.mark.parametrize("module", [dldebug.labels.stats, dldebug.labels.names, dldebug.labels.inputs,
                                    dldebug.labels.alignment, dldebug.labels.folders])
def test_doctests_run(module) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_confusion_matrix_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    labels, predicted = rng.integers(0, 7, 500), rng.integers(0, 9, 500)
    expected = sk_confusion(labels, predicted, labels=range(9))[:7]
    np.testing.assert_array_equal(confusion_matrix(labels, predicted, 7, 9), expected)


@pytest.mark.parametrize("seed", range(5))
def test_best_mapping_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    confusion = rng.integers(0, 20, (6, 6))
    best_total = max(sum(confusion[i, p[i]] for i in range(6)) for p in itertools.permutations(range(6)))
    mapping = best_mapping(confusion)
    assert sorted(mapping.tolist()) == list(range(6))
    assert confusion[np.arange(6), mapping].sum() == best_total


def test_best_mapping_prefers_given_index_on_ties() -> None:
    # every assignment matches 0 samples for labels 2 and 3: they must keep their own index
    confusion = np.array([[0, 9, 0, 0], [9, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    assert best_mapping(confusion).tolist() == [1, 0, 2, 3]


def test_best_mapping_rectangular_leaves_unassigned() -> None:
    confusion = np.array([[5, 0], [0, 5], [1, 1]])
    assert best_mapping(confusion).tolist() == [0, 1, -1]


@pytest.mark.parametrize(("k", "n", "p"), [(0, 5, 0.5), (3, 10, 0.5), (9, 10, 0.5), (10, 10, 0.5), (2, 7, 0.1),
                                           (11, 10, 0.5)])
def test_binomial_tail_matches_exact_sum(k: int, n: int, p: float) -> None:
    exact = sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))
    assert binomial_tail(k, n, p) == pytest.approx(exact, abs=1e-12)


def test_mutual_dominance_needs_row_and_column_maximum() -> None:
    confusion = np.array([[8, 1, 0], [7, 2, 0], [0, 0, 0]])
    # label 0 -> 0 dominates both ways; label 1 -> 1 is not its row's maximum; label 2 has no samples
    assert mutual_dominance(confusion, np.array([0, 1, 2])).tolist() == [True, False, False]


def test_cross_fit_counts_match_a_naive_loop() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 200)
    predicted = np.where(rng.random(200) < 0.8, np.array([1, 0, 2, 3])[labels], rng.integers(0, 4, 200))
    held = cross_fit(labels, predicted, 4, 4, seed=5)
    folds = np.random.default_rng(5).permutation(200) % 2
    gained = lost = hits = 0
    for fold in (0, 1):
        mapping = best_mapping(confusion_matrix(labels[folds != fold], predicted[folds != fold], 4, 4))
        for i in np.flatnonzero(folds == fold):
            right_mapped, right_given = predicted[i] == mapping[labels[i]], predicted[i] == labels[i]
            gained += right_mapped and not right_given
            lost += right_given and not right_mapped
            hits += right_mapped
    assert (held.gained, held.lost, held.hits, held.samples) == (gained, lost, hits, 200)
    assert held.p_misaligned < 1e-10
