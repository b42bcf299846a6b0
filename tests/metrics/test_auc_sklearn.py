"""`auc` and `gauc` against scikit-learn's roc_auc_score (per user for GAUC)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tfrs_llmrec.metrics.auc import auc, gauc


def _sklearn_gauc(users, labels, scores):
    """The DIN definition written out: per-user roc_auc_score, one-class users skipped, weights = impressions."""
    total, weight = 0.0, 0
    for user in np.unique(users):
        mine = users == user
        if np.unique(labels[mine]).size < 2:
            continue
        total += mine.sum() * roc_auc_score(labels[mine], scores[mine])
        weight += mine.sum()
    return total / weight


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("size", [1, 2, 3, 7, 50, 333, 2000])
def test_auc_matches_sklearn_on_random_cases(seed, size):
    rng = np.random.default_rng(seed)
    labels = (rng.random(size) < rng.uniform(0.05, 0.95)).astype(np.int64)
    scores = rng.normal(size=size)
    if np.unique(labels).size < 2:
        # Both refuse a one-class sample (always the case for size 1).
        with pytest.raises(ValueError):
            roc_auc_score(labels, scores)
        with pytest.raises(ValueError):
            auc(labels, scores)
        return
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("size", [2, 10, 100, 2000])
def test_auc_matches_sklearn_with_frequent_ties(seed, size):
    rng = np.random.default_rng(100 + seed)
    labels = np.r_[0, 1, (rng.random(size - 2) < 0.3).astype(np.int64)]
    # One decimal: at most 11 distinct scores, so most positive/negative pairs tie.
    scores = np.round(rng.random(size), 1)
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auc_of_constant_scores_is_one_half_like_sklearn():
    labels = np.array([1, 0, 0, 1, 0])
    scores = np.full(5, 0.3)
    assert auc(labels, scores) == 0.5 == roc_auc_score(labels, scores)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("rounded", [False, True])
def test_gauc_matches_per_user_sklearn(seed, rounded):
    rng = np.random.default_rng(200 + seed)
    size = 1500
    # ~300 users with ~5 impressions each (ids not contiguous): about a third are one-class.
    users = rng.integers(0, 300, size=size) * 7 + 3
    labels = (rng.random(size) < 0.2).astype(np.int64)
    one_class = sum(np.unique(labels[users == user]).size < 2 for user in np.unique(users))
    assert one_class > 30
    scores = rng.normal(size=size)
    if rounded:
        scores = np.round(scores, 1)
    assert gauc(users, labels, scores) == pytest.approx(_sklearn_gauc(users, labels, scores), abs=1e-12)
