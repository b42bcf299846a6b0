import math

import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.losses.modality_alignment import cosine_distance, modality_alignment_loss


def _unit(rows):
    rows = np.asarray(rows, np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _info_nce_by_hand(x, y, temperature, same):
    x, y = _unit(x), _unit(y)
    logits = x @ y.T / temperature
    losses = []
    for b in range(len(x)):
        negatives = [logits[b, j] for j in range(len(x)) if j != b and not same[b, j]]
        losses.append(-logits[b, b] + math.log(math.exp(logits[b, b]) + sum(math.exp(n) for n in negatives)))
    return np.array(losses)


X = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 2.0]])
Y = np.array([[0.8, 0.6], [1.0, 1.0], [-1.0, 1.0]])
T = np.array([[2.0, 1.0], [0.0, 1.0], [1.0, 3.0]])
E = np.array([[1.0, 1.0], [1.0, -1.0], [0.5, 2.0]])


def test_alignment_loss_by_hand():
    ids = np.array([3, 4, 3])  # rows 0 and 2 share a target: not negatives of each other
    same = ids[:, None] == ids[None, :]
    tau, alpha, beta = 0.5, 0.3, 0.2
    cos = lambda a, b: np.sum(_unit(a) * _unit(b), axis=1)  # noqa: E731
    expected = (alpha * (_info_nce_by_hand(X, Y, tau, same).mean() + _info_nce_by_hand(T, E, tau, same).mean())
                + beta * ((1 - cos(X, Y)).mean() + (1 - cos(T, E)).mean()))
    loss = modality_alignment_loss(*(tf.constant(v, tf.float32) for v in (X, Y, T, E)), alpha=alpha, beta=beta,
                                   temperature=tau, target_ids=tf.constant(ids, tf.int64))
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_user_weight_leaves_out_users_without_explicit_interests():
    weight = tf.constant([1.0, 0.0, 1.0])
    cos = np.sum(_unit(X) * _unit(Y), axis=1)
    assert float(cosine_distance(tf.constant(X, tf.float32), tf.constant(Y, tf.float32), weight)) == pytest.approx(
        ((1 - cos[0]) + (1 - cos[2])) / 2, rel=1e-6)


def test_both_sides_receive_gradients():
    variables = [tf.Variable(v, dtype=tf.float32) for v in (X, Y, T, E)]
    with tf.GradientTape() as tape:
        loss = modality_alignment_loss(*variables, alpha=0.25, beta=0.25)
    for gradient in tape.gradient(loss, variables):
        assert gradient is not None and float(tf.reduce_sum(tf.abs(gradient))) > 0
