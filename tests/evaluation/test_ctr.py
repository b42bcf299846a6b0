import json
import math

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import log_loss as sklearn_log_loss
from sklearn.metrics import roc_auc_score

from tfrs_llmrec.data.spec import ITEM_INDEX, LABEL, USER_INDEX
from tfrs_llmrec.evaluation import evaluate_ctr, predict_and_evaluate, write_metrics_json
from tfrs_llmrec.evaluation.report import SUMMARY_GROUPS
from tfrs_llmrec.metrics.auc import auc, gauc

KEYS = {"auc", "gauc", "logloss", "num_examples", "num_positives", "gauc_users"}

# Hand-made case: items 0, 1 are head, 2, 3 tail; users 0 and 2 are active (user 3 never appears).
ITEM_IS_HEAD = np.array([True, True, False, False])
USER_IS_ACTIVE = np.array([True, False, True, False])
#                  r0    r1   r2   r3    r4   r5   r6   r7   r8    r9
USERS = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
ITEMS = np.array([0, 2, 1, 3, 0, 2, 3, 1, 0, 2])
LABELS = np.array([1, 0, 0, 1, 1, 0, 1, 0, 0, 1])
LOGITS = np.array([2.0, 1.0, 3.0, -1.0, 0.5, 0.5, 2.0, 0.0, -0.5, 1.5])


def _sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-logits))


def _hand_logloss(rows):
    return sklearn_log_loss(LABELS[rows], _sigmoid(LOGITS[rows]), labels=[0, 1])


def test_groups_by_hand():
    result = evaluate_ctr(LABELS, LOGITS, USERS, ITEMS, ITEM_IS_HEAD, USER_IS_ACTIVE)
    assert tuple(result) == SUMMARY_GROUPS
    assert all(set(values) == KEYS for values in result.values())

    # Per-user AUC over all rows: user 0 positives {2, -1} vs negatives {1, 3}: 1 of 4 pairs -> 0.25;
    # user 1 positives {0.5, 2} vs negative {0.5}: tie 1/2 + 1 -> 0.75; user 2: 1.5 beats 0 and -0.5 -> 1.
    overall = result["overall"]
    assert overall["gauc"] == pytest.approx((4 * 0.25 + 3 * 0.75 + 3 * 1.0) / 10)
    assert (overall["num_examples"], overall["num_positives"], overall["gauc_users"]) == (10, 5, 3)

    # Head rows r0 r2 r4 r7 r8: positives {2, 0.5} vs negatives {3, 0, -0.5}: 4 of 6 pairs.
    # Per user only user 0 has both labels (2 vs 3 -> 0); user 1 has one head row, user 2 only negatives.
    head = result["head_items"]
    assert head["auc"] == pytest.approx(4 / 6)
    assert head["gauc"] == 0.0
    assert (head["num_examples"], head["num_positives"], head["gauc_users"]) == (5, 2, 1)
    assert head["logloss"] == pytest.approx(_hand_logloss([0, 2, 4, 7, 8]), rel=1e-9)

    # Tail rows r1 r3 r5 r6 r9: positives {-1, 2, 1.5} vs negatives {1, 0.5}: 4 of 6 pairs.
    # User 0: -1 vs 1 -> 0 (2 rows); user 1: 2 vs 0.5 -> 1 (2 rows); user 2 has one tail row.
    tail = result["tail_items"]
    assert tail["auc"] == pytest.approx(4 / 6)
    assert tail["gauc"] == pytest.approx((2 * 0.0 + 2 * 1.0) / 4)
    assert (tail["num_examples"], tail["num_positives"], tail["gauc_users"]) == (5, 3, 2)
    assert tail["logloss"] == pytest.approx(_hand_logloss([1, 3, 5, 6, 9]), rel=1e-9)

    # Active users 0 and 2: positives {2, -1, 1.5} vs negatives {1, 3, 0, -0.5}: 3 + 0 + 3 of 12 pairs.
    active = result["active_users"]
    assert active["auc"] == pytest.approx(6 / 12)
    assert active["gauc"] == pytest.approx((4 * 0.25 + 3 * 1.0) / 7)
    assert (active["num_examples"], active["num_positives"], active["gauc_users"]) == (7, 3, 2)
    assert active["logloss"] == pytest.approx(_hand_logloss([0, 1, 2, 3, 7, 8, 9]), rel=1e-9)

    inactive = result["inactive_users"]
    assert inactive["auc"] == pytest.approx(0.75) and inactive["gauc"] == pytest.approx(0.75)
    assert (inactive["num_examples"], inactive["num_positives"], inactive["gauc_users"]) == (3, 2, 1)
    assert inactive["logloss"] == pytest.approx(_hand_logloss([4, 5, 6]), rel=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_overall_equals_sklearn_and_the_metric_functions(seed):
    rng = np.random.default_rng(seed)
    size = 3000
    users = rng.integers(0, 200, size=size)
    items = rng.integers(0, 50, size=size)
    labels = (rng.random(size) < 0.25).astype(np.float32)  # float labels, as the data spec stores them
    # float32 logits up to +-60: their sigmoids round to 0 or 1, the logits stay ordered.
    logits = (rng.normal(size=size) * 20).astype(np.float32)
    result = evaluate_ctr(labels, logits, users, items, rng.random(50) < 0.2, rng.random(200) < 0.5)["overall"]
    assert result["auc"] == pytest.approx(roc_auc_score(labels, logits), abs=1e-12)
    assert result["gauc"] == pytest.approx(gauc(users, labels, logits), abs=1e-12)
    expected_logloss = np.mean(np.logaddexp(0.0, np.where(labels == 1, -1.0, 1.0) * logits.astype(np.float64)))
    assert result["logloss"] == pytest.approx(expected_logloss, rel=1e-9)
    assert result["num_examples"] == size and result["num_positives"] == int(labels.sum())


def test_groups_that_cannot_be_computed_are_nan_and_null_in_json(tmp_path):
    # Every head impression is a negative (one class); each user has a single tail impression, so the
    # tail group has both classes but no user with both; every user is active, so inactive is empty.
    users = np.array([0, 0, 1, 1, 2])
    items = np.array([0, 2, 0, 3, 4])
    labels = np.array([0, 1, 0, 0, 0])
    logits = np.array([0.3, 0.5, -0.1, 0.4, 1.0])
    result = evaluate_ctr(labels, logits, users, items, [True, True, False, False, False], [True, True, True])
    head, tail, inactive = result["head_items"], result["tail_items"], result["inactive_users"]
    assert math.isnan(head["auc"]) and math.isnan(head["gauc"]) and head["gauc_users"] == 0
    assert head["logloss"] == pytest.approx(np.mean(np.logaddexp(0.0, [0.3, -0.1])))
    # Tail: the positive 0.5 beats 0.4 and loses to 1.0.
    assert tail["auc"] == pytest.approx(0.5) and math.isnan(tail["gauc"]) and tail["gauc_users"] == 0
    assert all(math.isnan(inactive[name]) for name in ("auc", "gauc", "logloss"))
    assert (inactive["num_examples"], inactive["num_positives"], inactive["gauc_users"]) == (0, 0, 0)
    assert result["overall"]["gauc"] == 1.0 and result["overall"]["gauc_users"] == 1

    written = json.loads(write_metrics_json(tmp_path / "metrics.json", result).read_text())
    assert written["head_items"]["auc"] is None and written["inactive_users"]["logloss"] is None
    assert written["tail_items"]["auc"] == pytest.approx(0.5)


def _random_impressions(seed, size):
    rng = np.random.default_rng(seed)
    return {USER_INDEX: rng.integers(0, 30, size=size), ITEM_INDEX: rng.integers(0, 20, size=size),
            LABEL: (rng.random(size) < 0.3).astype(np.float32)}


def _predict(batch):
    """A fixed 'model': a logit per (user, item) pair, as a tensor like a Keras model returns."""
    user = tf.cast(batch[USER_INDEX], tf.float32)
    item = tf.cast(batch[ITEM_INDEX], tf.float32)
    return tf.sin(user * 1.7 + item * 0.3) * 4.0


@pytest.mark.parametrize("progress", [False, True])
def test_predict_and_evaluate_over_batches_equals_evaluate_ctr(progress):
    data = _random_impressions(0, 250)
    item_is_head = np.arange(20) < 5
    user_is_active = np.arange(30) % 3 == 0
    batches = tf.data.Dataset.from_tensor_slices(data).batch(100)  # 100 + 100 + 50
    assert len(list(batches)) == 3
    result = predict_and_evaluate(_predict, batches, item_is_head, user_is_active, progress=progress)
    expected = evaluate_ctr(data[LABEL], _predict(data).numpy(), data[USER_INDEX], data[ITEM_INDEX],
                            item_is_head, user_is_active)
    assert result == expected
    assert result["overall"]["num_examples"] == 250
    assert result["overall"]["auc"] == pytest.approx(auc(data[LABEL], _predict(data).numpy()))


def test_predict_and_evaluate_rejects_bad_batches():
    data = _random_impressions(1, 10)
    with pytest.raises(ValueError, match="mismatched sizes"):
        predict_and_evaluate(lambda batch: np.zeros(9), [data], np.ones(20, bool), np.ones(30, bool), progress=False)
    with pytest.raises(ValueError, match="no batch"):
        predict_and_evaluate(_predict, [], np.ones(20, bool), np.ones(30, bool), progress=False)


def test_invalid_inputs_raise():
    arguments = (LABELS, LOGITS, USERS, ITEMS, ITEM_IS_HEAD, USER_IS_ACTIVE)

    def call(**changes):
        names = ("labels", "logits", "user_indices", "item_indices", "item_is_head", "user_is_active")
        values = dict(zip(names, arguments))
        values.update(changes)
        return evaluate_ctr(**values)

    with pytest.raises(ValueError, match="must be equal"):
        call(logits=LOGITS[:-1])
    with pytest.raises(ValueError, match="0 or 1"):
        call(labels=LABELS * 2)
    with pytest.raises(ValueError, match="finite"):
        call(logits=np.r_[LOGITS[:-1], np.nan])
    with pytest.raises(ValueError, match="item_is_head has 3 entries"):
        call(item_is_head=ITEM_IS_HEAD[:3])
    with pytest.raises(ValueError, match="user_indices range"):
        call(user_indices=np.r_[USERS[:-1], -1])
    with pytest.raises(ValueError, match="integer"):
        call(item_indices=ITEMS.astype(np.float64))
    with pytest.raises(ValueError, match="boolean"):
        call(user_is_active=USER_IS_ACTIVE * 2)
