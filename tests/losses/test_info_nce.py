import math

import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.losses.info_nce import info_nce_loss
from tfrs_llmrec.losses.sampled_softmax import sampled_softmax_loss

QUERY = tf.constant([[1.0, 0.0]])
POSITIVE = tf.constant([[1.0, 0.0]])
# Per-row negatives of the single row: similarities with the query are 0 and -1.
NEGATIVES = tf.constant([[[0.0, 1.0], [-1.0, 0.0]]])


def test_per_row_negatives_by_hand():
    # logits [s+, s-...] = [1, 0, -1] -> -log(e / (e + 1 + e^-1)) = log(1 + e^-1 + e^-2).
    loss = info_nce_loss(QUERY, POSITIVE, NEGATIVES, temperature=1.0, normalize=False)
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-1) + math.exp(-2)), rel=1e-6)


def test_temperature_divides_similarities():
    # tau = 0.5 -> logits [2, 0, -2] -> log(1 + e^-2 + e^-4).
    loss = info_nce_loss(QUERY, POSITIVE, NEGATIVES, temperature=0.5, normalize=False)
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-2) + math.exp(-4)), rel=1e-6)


def test_shared_negatives_equal_tiled_per_row_negatives():
    # Two rows, the same two negatives [0, 1] and [1, 1] for both.
    # Row 0: q [1, 0], p [1, 0] -> logits [1, 0, 1] -> log(1 + e^-1 + 1) = log(2 + e^-1).
    # Row 1: q [0, 1], p [0, 2] -> logits [2, 1, 1] -> log(1 + 2 e^-1).
    query = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    positive = tf.constant([[1.0, 0.0], [0.0, 2.0]])
    shared = tf.constant([[0.0, 1.0], [1.0, 1.0]])
    loss = info_nce_loss(query, positive, shared, temperature=1.0, normalize=False)
    expected = (math.log(2 + math.exp(-1)) + math.log(1 + 2 * math.exp(-1))) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    tiled = info_nce_loss(query, positive, tf.tile(shared[tf.newaxis], [2, 1, 1]), temperature=1.0, normalize=False)
    assert float(tiled) == pytest.approx(expected, rel=1e-6)


def test_normalize_uses_cosines():
    # q [2, 0], p [3, 0], n [0, 5]: cosines 1 and 0 -> log(1 + e^-1); raw dot products 6 and 0 -> log(1 + e^-6).
    query, positive, negatives = tf.constant([[2.0, 0.0]]), tf.constant([[3.0, 0.0]]), tf.constant([[[0.0, 5.0]]])
    cosine = info_nce_loss(query, positive, negatives, temperature=1.0)
    dot = info_nce_loss(query, positive, negatives, temperature=1.0, normalize=False)
    assert float(cosine) == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    assert float(dot) == pytest.approx(math.log(1 + math.exp(-6)), rel=1e-5)


def test_in_batch_by_hand_and_accidental_hits():
    # Identity queries/positives: each row's logits [1, 0] -> log(1 + e^-1).
    eye = tf.eye(2)
    assert float(info_nce_loss(eye, eye, None, temperature=1.0)) == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    # Both rows share positive item 7: the other row is not a negative, so each row's loss is 0.
    same = tf.constant([7, 7], tf.int64)
    assert float(info_nce_loss(eye, eye, None, temperature=1.0, positive_ids=same)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 0.2, 0.05])
def test_in_batch_equals_sampled_softmax_formula(temperature):
    rng = np.random.default_rng(0)
    query = tf.constant(rng.normal(size=(5, 4)), tf.float32)
    positive = tf.constant(rng.normal(size=(5, 4)), tf.float32)
    ids = tf.range(5, dtype=tf.int64)
    expected = sampled_softmax_loss(query, positive, ids, ids, temperature=temperature)
    loss = info_nce_loss(query, positive, None, temperature=temperature, normalize=False)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    # With normalize, it is the same softmax over the L2-normalised vectors.
    expected = sampled_softmax_loss(tf.math.l2_normalize(query, -1), tf.math.l2_normalize(positive, -1), ids, ids,
                                    temperature=temperature)
    assert float(info_nce_loss(query, positive, temperature=temperature)) == pytest.approx(float(expected), rel=1e-5)


def test_per_row_negatives_match_numpy_formula():
    rng = np.random.default_rng(1)
    query, positive, negatives = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=(3, 6, 4))
    tau = 0.3
    s_pos = np.sum(query * positive, axis=1) / tau
    s_neg = np.einsum("bd,bnd->bn", query, negatives) / tau
    expected = np.mean(-np.log(np.exp(s_pos) / (np.exp(s_pos) + np.exp(s_neg).sum(axis=1))))
    loss = info_nce_loss(tf.constant(query), tf.constant(positive), tf.constant(negatives), temperature=tau,
                         normalize=False)
    assert float(loss) == pytest.approx(expected, rel=1e-9)


def test_sample_weights():
    # Row 0 (weight 0) is ignored; row 1 alone: q [0, 1], p [0, 1], n [1, 0] -> log(1 + e^-1).
    query = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    negatives = tf.constant([[[1.0, 0.0]], [[1.0, 0.0]]])
    loss = info_nce_loss(query, query, negatives, temperature=1.0, sample_weight=tf.constant([0.0, 1.0]))
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    assert float(info_nce_loss(query, query, negatives, temperature=1.0, sample_weight=tf.zeros([2]))) == 0.0


def test_gradient_pulls_toward_positive_and_is_finite_at_small_temperature():
    query = tf.Variable([[1.0, 1.0]])
    positive = tf.constant([[1.0, 0.0]])
    negatives = tf.constant([[[0.0, 1.0]]])
    for tau in (1.0, 0.01):
        with tf.GradientTape() as tape:
            loss = info_nce_loss(query, positive, negatives, temperature=tau, normalize=False)
        gradient = tape.gradient(loss, query).numpy()
        assert np.isfinite(float(loss)) and np.all(np.isfinite(gradient))
        assert gradient[0, 0] < 0 < gradient[0, 1]  # descent moves toward [1, 0], away from [0, 1]


def test_rejects_bad_negative_rank():
    with pytest.raises(ValueError):
        info_nce_loss(QUERY, POSITIVE, tf.zeros([1, 1, 1, 2]))


def test_accepts_numpy_inputs():
    # Same case as test_per_row_negatives_by_hand, as float64 numpy arrays.
    loss = info_nce_loss(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]), np.array([[[0.0, 1.0], [-1.0, 0.0]]]),
                         temperature=1.0, normalize=False)
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-1) + math.exp(-2)), rel=1e-12)
