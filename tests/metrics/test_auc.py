import numpy as np
import pytest

from tfrs_llmrec.metrics.auc import AUCAccumulator, auc, gauc, per_user_auc


def test_auc_counts_ties_as_half():
    # Positives 0.8, 0.3; negatives 0.8, 0.1. Pairs (pos, neg):
    # (0.8, 0.8) tie -> 1/2, (0.8, 0.1) -> 1, (0.3, 0.8) -> 0, (0.3, 0.1) -> 1. AUC = 2.5 / 4.
    assert auc([1, 0, 1, 0], [0.8, 0.8, 0.3, 0.1]) == pytest.approx(0.625)


def test_auc_extremes_and_constant_scores():
    assert auc([1, 1, 0], [3.0, 2.0, 1.0]) == 1.0
    assert auc([0, 0, 1], [3.0, 2.0, 1.0]) == 0.0
    # Every pair ties -> 1/2.
    assert auc([1, 0, 0, 1], [0.4, 0.4, 0.4, 0.4]) == 0.5


# Rows interleaved across users on purpose.
USERS = [10, 20, 10, 30, 40, 20, 10, 30, 40, 40, 40]
LABELS = [1, 0, 0, 1, 0, 1, 0, 1, 0, 0, 0]
SCORES = [0.9, 0.7, 0.9, 0.5, 0.1, 0.2, 0.1, 0.4, 0.2, 0.3, 0.4]


def test_gauc_weights_users_by_examples_and_skips_one_class_users():
    # User 10: pos 0.9; negs 0.9, 0.1 -> (1/2 + 1) / 2 = 0.75, 3 examples.
    # User 20: pos 0.2; neg 0.7 -> 0, 2 examples.
    # User 30: only positives, user 40: only negatives -> skipped with their weight.
    # GAUC = (3 * 0.75 + 2 * 0) / (3 + 2) = 0.45.
    assert gauc(USERS, LABELS, SCORES) == pytest.approx(0.45)
    users, values, examples = per_user_auc(USERS, LABELS, SCORES)
    assert users.tolist() == [10, 20, 30, 40]
    assert values[:2].tolist() == pytest.approx([0.75, 0.0])
    assert np.isnan(values[2]) and np.isnan(values[3])
    assert examples.tolist() == [3, 2, 2, 4]


def test_gauc_of_one_user_is_that_users_auc():
    assert gauc([7, 7, 7, 7], [1, 0, 1, 0], [0.8, 0.8, 0.3, 0.1]) == pytest.approx(0.625)


def test_accumulator_matches_the_functions():
    accumulator = AUCAccumulator()
    for start in range(0, len(USERS), 4):
        stop = start + 4
        accumulator.update(LABELS[start:stop], SCORES[start:stop], user_ids=USERS[start:stop])
    result = accumulator.result()
    assert result["auc"] == pytest.approx(auc(LABELS, SCORES))
    assert result["gauc"] == pytest.approx(0.45)
    accumulator.reset()
    accumulator.update([1, 0], [0.2, 0.1])
    assert accumulator.result() == {"auc": 1.0}
    with pytest.raises(ValueError, match="every batch"):
        accumulator.update([1], [0.3], user_ids=[1])


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="positive and one negative"):
        auc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="0 or 1"):
        auc([2, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="entries"):
        auc([1, 0, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="at least one user"):
        gauc([1, 1, 2], [1, 1, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="no examples"):
        AUCAccumulator().result()
