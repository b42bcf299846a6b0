"""AUC and group AUC (GAUC) for ranking (CTR-style) models, in NumPy.

AUC is the probability that a random positive scores above a random negative, with ties
counting 1/2 (the Mann-Whitney statistic, computed from average ranks in O(n log n)).

GAUC (Zhou et al., "Deep Interest Network", KDD 2018) averages each user's AUC weighted by the
user's number of examples. A user whose labels are all 0 or all 1 has no AUC and is skipped,
weight included, so GAUC only reflects how well the model orders items within a user.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np


def auc(labels, scores) -> float:
    """AUC of `scores` against binary `labels`; ties between a positive and a negative count 1/2."""
    labels, scores = _binary_labels_and_scores(labels, scores)
    num_positive = int(labels.sum())
    num_negative = labels.size - num_positive
    if num_positive == 0 or num_negative == 0:
        raise ValueError("AUC needs at least one positive and one negative label")
    ranks = _average_ranks(scores)
    positive_rank_sum = ranks[labels].sum()
    return float((positive_rank_sum - num_positive * (num_positive + 1) / 2.0) / (num_positive * num_negative))


def per_user_auc(user_ids, labels, scores) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct user ids, their AUC, their number of examples); AUC is NaN for one-class users."""
    labels, scores = _binary_labels_and_scores(labels, scores)
    user_ids = np.asarray(user_ids).reshape(-1)
    if user_ids.shape != labels.shape:
        raise ValueError(f"user_ids has {user_ids.size} entries, labels has {labels.size}")
    if labels.size == 0:
        return user_ids[:0], np.zeros(0), np.zeros(0, dtype=np.int64)
    order = np.lexsort((scores, user_ids))
    users, scores, labels = user_ids[order], scores[order], labels[order]
    count = labels.size
    position = np.arange(count)
    starts_user = np.r_[True, users[1:] != users[:-1]]
    starts_tie = starts_user | np.r_[True, scores[1:] != scores[:-1]]
    # Every member of a tie group gets the group's mean position; ranks are 1-based within a user.
    tie_start = np.flatnonzero(starts_tie)
    tie_stop = np.r_[tie_start[1:], count]
    tie_of = np.cumsum(starts_tie) - 1
    mean_position = ((tie_start + tie_stop - 1) / 2.0)[tie_of]
    user_start = np.maximum.accumulate(np.where(starts_user, position, 0))
    rank_in_user = mean_position - user_start + 1.0

    user_of = np.cumsum(starts_user) - 1
    examples = np.bincount(user_of)
    positives = np.bincount(user_of, weights=labels).astype(np.int64)
    negatives = examples - positives
    positive_rank_sum = np.bincount(user_of, weights=np.where(labels, rank_in_user, 0.0))
    has_both = (positives > 0) & (negatives > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = (positive_rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)
    return users[starts_user], np.where(has_both, values, np.nan), examples


def gauc(user_ids, labels, scores) -> float:
    """Per-user AUC averaged with weights = the user's number of examples, one-class users skipped."""
    _, values, examples = per_user_auc(user_ids, labels, scores)
    kept = ~np.isnan(values)
    if not np.any(kept):
        raise ValueError("GAUC needs at least one user with both a positive and a negative label")
    return float(np.sum(values[kept] * examples[kept]) / np.sum(examples[kept]))


class AUCAccumulator:
    """Collects (labels, scores[, user ids]) batch by batch; `result()` gives exact AUC and GAUC.

    Exact rather than bucketed: it keeps every example (O(n) memory), which suits evaluation
    sets that fit in host memory and keeps results identical to `auc` / `gauc`.
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self._labels: List[np.ndarray] = []
        self._scores: List[np.ndarray] = []
        self._user_ids: List[np.ndarray] = []
        self._with_users: Optional[bool] = None

    def update(self, labels, scores, user_ids=None) -> None:
        labels, scores = _binary_labels_and_scores(labels, scores)
        with_users = user_ids is not None
        if self._with_users is not None and with_users != self._with_users:
            raise ValueError("pass user_ids with every batch or with none")
        self._with_users = with_users
        if with_users:
            user_ids = np.asarray(user_ids).reshape(-1)
            if user_ids.shape != labels.shape:
                raise ValueError(f"user_ids has {user_ids.size} entries, labels has {labels.size}")
            self._user_ids.append(user_ids)
        self._labels.append(labels)
        self._scores.append(scores)

    def result(self) -> Dict[str, float]:
        """{"auc": ...} plus {"gauc": ...} when user ids were given."""
        if not self._labels:
            raise ValueError("no examples were added")
        labels = np.concatenate(self._labels)
        scores = np.concatenate(self._scores)
        values = {"auc": auc(labels, scores)}
        if self._with_users:
            values["gauc"] = gauc(np.concatenate(self._user_ids), labels, scores)
        return values


def _binary_labels_and_scores(labels, scores) -> Tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"labels has {labels.size} entries, scores has {scores.size}")
    if labels.size and not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0 or 1")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    return labels.astype(bool), scores


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks in ascending order, tied values sharing their mean rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1
    return (first_rank + (counts - 1) / 2.0)[inverse]
