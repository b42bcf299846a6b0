import math

import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.losses import sampled_softmax_loss

QUERIES = tf.constant([[1.0, 0.0], [0.0, 1.0]])
CANDIDATES = tf.constant([[1.0, 0.0], [0.0, 1.0]])


def test_plain_in_batch_softmax():
    # Each row: logits [1, 0] for (positive, negative) -> loss = log(1 + e^-1).
    loss = sampled_softmax_loss(QUERIES, CANDIDATES, tf.constant([0, 1], tf.int64), tf.constant([0, 1], tf.int64))
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)


def test_temperature_scales_logits():
    # T = 0.5 doubles the logits: [2, 0] -> log(1 + e^-2).
    loss = sampled_softmax_loss(QUERIES, CANDIDATES, tf.constant([0, 1], tf.int64), tf.constant([0, 1], tf.int64),
                                temperature=0.5)
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)


def test_logq_correction_subtracts_per_candidate():
    # log q = [log 2, 0]. Row 0 logits [1 - log2, 0]; row 1 logits [0 - log2, 1].
    log_q = tf.constant([math.log(2.0), 0.0])
    loss = sampled_softmax_loss(QUERIES, CANDIDATES, tf.constant([0, 1], tf.int64), tf.constant([0, 1], tf.int64),
                                candidate_log_q=log_q)
    row0 = math.log(1 + math.exp(0 - (1 - math.log(2))))
    row1 = math.log(1 + math.exp(-math.log(2) - 1))
    assert float(loss) == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_accidental_hits_are_removed():
    # Both rows have the same positive item, so each row's only negative is that item: loss 0.
    ids = tf.constant([5, 5], tf.int64)
    assert float(sampled_softmax_loss(QUERIES, CANDIDATES, ids, ids)) == pytest.approx(0.0, abs=1e-6)
    kept = sampled_softmax_loss(QUERIES, CANDIDATES, ids, ids, remove_accidental_hits=False)
    assert float(kept) == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)


def test_sampled_negatives_extend_the_denominator():
    # A third candidate (sampled, id 9) equal to [1, 1]: row logits [1, 0, 1] -> log(1 + e^-1 + 1).
    candidates = tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    loss = sampled_softmax_loss(QUERIES, candidates, tf.constant([0, 1, 9], tf.int64), tf.constant([0, 1], tf.int64))
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-1) + 1), rel=1e-6)


def test_sample_weights():
    log_q = tf.constant([math.log(2.0), 0.0])
    ids = tf.constant([0, 1], tf.int64)
    weighted = sampled_softmax_loss(QUERIES, CANDIDATES, ids, ids, candidate_log_q=log_q,
                                    sample_weight=tf.constant([0.0, 1.0]))
    assert float(weighted) == pytest.approx(math.log(1 + math.exp(-math.log(2) - 1)), rel=1e-6)


def test_gradient_pulls_query_toward_positive():
    query = tf.Variable([[0.1, 0.1], [0.0, 1.0]])
    ids = tf.constant([0, 1], tf.int64)
    with tf.GradientTape() as tape:
        loss = sampled_softmax_loss(query, CANDIDATES, ids, ids)
    gradient = tape.gradient(loss, query).numpy()
    assert gradient[0, 0] < 0 < gradient[0, 1]  # descending moves row 0 toward candidate 0
    assert np.all(np.isfinite(gradient))


def test_hard_negatives_are_weighted_by_their_scores():
    # Row 0: positive logit 1, negatives 0 (row 1's positive) and 2 (sampled). With beta = 1 the
    # negative weights are 2 * softmax([0, 2]) = 2 * [1, e^2] / (1 + e^2).
    candidates = tf.constant([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    loss = sampled_softmax_loss(QUERIES[:1], candidates, tf.constant([0, 1, 9], tf.int64),
                                tf.constant([0], tf.int64), hardness=1.0)
    weights = 2 * np.array([1.0, math.exp(2)]) / (1 + math.exp(2))
    denominator = math.exp(1) + weights[0] * math.exp(0) + weights[1] * math.exp(2)
    assert float(loss) == pytest.approx(math.log(denominator) - 1.0, rel=1e-6)
    plain = sampled_softmax_loss(QUERIES[:1], candidates, tf.constant([0, 1, 9], tf.int64), tf.constant([0], tf.int64))
    assert float(plain) == pytest.approx(math.log(math.exp(1) + 1 + math.exp(2)) - 1.0, rel=1e-6)


def test_hard_negative_weights_keep_accidental_hits_masked():
    # Row 0's only other candidate shares its item ID: removed whatever the hardness.
    ids = tf.constant([5, 5], tf.int64)
    assert float(sampled_softmax_loss(QUERIES, CANDIDATES, ids, ids, hardness=2.0)) == pytest.approx(0.0, abs=1e-6)
