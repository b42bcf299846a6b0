import math

import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.losses.bpr import bpr_loss, l2_regularization


def test_one_negative_per_row_by_hand():
    # Margins pos - neg = [1, -1] -> softplus(-1) = log(1 + e^-1), softplus(1) = log(1 + e).
    loss = bpr_loss(tf.constant([2.0, 0.0]), tf.constant([1.0, 1.0]))
    assert float(loss) == pytest.approx((math.log(1 + math.exp(-1)) + math.log(1 + math.e)) / 2, rel=1e-6)


def test_several_negatives_per_row_average_within_the_row():
    # Row 0: pos 1, negs [1, 3] -> (log 2 + log(1 + e^2)) / 2. Row 1: pos 0, neg [0, 0] -> log 2.
    loss = bpr_loss(tf.constant([1.0, 0.0]), tf.constant([[1.0, 3.0], [0.0, 0.0]]))
    row0 = (math.log(2) + math.log(1 + math.exp(2))) / 2
    assert float(loss) == pytest.approx((row0 + math.log(2)) / 2, rel=1e-6)


def test_large_margins_stay_finite():
    # softplus(-2000) = 0 and softplus(2000) = 2000 -> mean 1000; -log(sigmoid(-2000)) in float32 would be inf.
    positive = tf.Variable([1000.0, -1000.0])
    negative = tf.Variable([-1000.0, 1000.0])
    with tf.GradientTape() as tape:
        loss = bpr_loss(positive, negative)
    assert float(loss) == pytest.approx(1000.0, rel=1e-6)
    naive = -tf.math.log(tf.sigmoid(positive - negative))
    assert not np.all(np.isfinite(naive.numpy()))
    grad_pos, grad_neg = [g.numpy() for g in tape.gradient(loss, [positive, negative])]
    # d/dpos = -sigmoid(neg - pos) / B = [-0, -0.5]; d/dneg = [0, 0.5].
    np.testing.assert_allclose(grad_pos, [0.0, -0.5], atol=1e-6)
    np.testing.assert_allclose(grad_neg, [0.0, 0.5], atol=1e-6)


def test_gradient_raises_positive_and_lowers_negative():
    positive = tf.Variable([0.3, -0.2])
    negative = tf.Variable([[0.1, 0.5], [0.0, -1.0]])
    with tf.GradientTape() as tape:
        loss = bpr_loss(positive, negative)
    grad_pos, grad_neg = tape.gradient(loss, [positive, negative])
    assert np.all(grad_pos.numpy() < 0) and np.all(grad_neg.numpy() > 0)


def test_sample_weights():
    # Only row 1 counts: margin -1 -> log(1 + e).
    loss = bpr_loss(tf.constant([2.0, 0.0]), tf.constant([1.0, 1.0]), sample_weight=tf.constant([0.0, 2.0]))
    assert float(loss) == pytest.approx(math.log(1 + math.e), rel=1e-6)


def test_l2_regularization_by_hand():
    # Squares: users 1 + 4 + 0 + 0, items 9 + 0 + 0 + 1 -> 15; halved 7.5; over B = 2 -> 3.75; x 0.1 -> 0.375.
    users = tf.constant([[1.0, 2.0], [0.0, 0.0]])
    items = tf.constant([[3.0, 0.0], [0.0, 1.0]])
    assert float(l2_regularization(users, items, weight=0.1)) == pytest.approx(0.375, rel=1e-6)
    assert float(l2_regularization(users, items, weight=0.1, batch_size=5)) == pytest.approx(0.15, rel=1e-6)
    assert float(l2_regularization(tf.zeros([0, 2]), weight=1.0)) == 0.0


def test_rejects_bad_negative_rank():
    with pytest.raises(ValueError):
        bpr_loss(tf.zeros([2]), tf.zeros([2, 1, 1]))
