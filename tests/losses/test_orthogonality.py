import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.losses.orthogonality import orthogonality_loss


def test_orthogonal_pairs_give_zero_and_parallel_pairs_give_one():
    cluster = tf.constant([[1.0, 0.0], [2.0, 2.0]])
    assert float(orthogonality_loss(cluster, tf.constant([[0.0, 3.0], [-1.0, 1.0]]))) == pytest.approx(0.0, abs=1e-7)
    assert float(orthogonality_loss(cluster, tf.constant([[5.0, 0.0], [0.5, 0.5]]))) == pytest.approx(1.0, rel=1e-6)
    assert float(orthogonality_loss(cluster, -cluster)) == pytest.approx(1.0, rel=1e-6)  # anti-parallel too


def test_mean_of_squared_cosines_by_hand():
    # cos = [1/sqrt(2), 0, 1] -> squares [0.5, 0, 1] -> mean 0.5.
    cluster = tf.constant([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    individual = tf.constant([[1.0, 1.0], [0.0, -4.0], [0.0, 0.1]])
    assert float(orthogonality_loss(cluster, individual)) == pytest.approx(0.5, rel=1e-6)
    # Weighted: (2 * 0.5 + 0 * 0 + 1 * 1) / 3.
    assert float(orthogonality_loss(cluster, individual, sample_weight=tf.constant([2.0, 0.0, 1.0]))) == pytest.approx(
        2.0 / 3.0, rel=1e-6)


def test_masked_sequence_positions_and_zero_vectors_count_as_nothing():
    cluster = np.zeros([2, 3, 2], np.float32)
    individual = np.zeros([2, 3, 2], np.float32)
    cluster[0, 0], individual[0, 0] = [1.0, 0.0], [3.0, 0.0]  # parallel
    cluster[1, 0], individual[1, 0] = [1.0, 0.0], [0.0, 1.0]  # orthogonal
    cluster[0, 1], individual[0, 1] = [1.0, 1.0], [1.0, 1.0]  # parallel but masked out
    mask = tf.constant([[True, False, False], [True, False, False]])
    assert float(orthogonality_loss(tf.constant(cluster), tf.constant(individual), mask)) == pytest.approx(0.5)
    loss = orthogonality_loss(tf.zeros([2, 2]), tf.zeros([2, 2]))
    assert float(loss) == 0.0


def test_gradient_descent_turns_the_pair_apart():
    cluster = tf.Variable([[1.0, 0.2]])
    individual = tf.Variable([[1.0, 0.5]])
    with tf.GradientTape() as tape:
        loss = orthogonality_loss(cluster, individual)
    gradients = tape.gradient(loss, [cluster, individual])
    assert all(np.abs(gradient.numpy()).sum() > 0 for gradient in gradients)
    for variable, gradient in zip([cluster, individual], gradients):
        variable.assign_sub(0.1 * gradient)
    assert float(orthogonality_loss(cluster, individual)) < float(loss)


def test_float16_inputs_give_a_float32_loss():
    loss = orthogonality_loss(tf.constant([[1.0, 0.0]], tf.float16), tf.constant([[1.0, 1.0]], tf.float16))
    assert loss.dtype == tf.float32
    assert float(loss) == pytest.approx(0.5, rel=1e-3)
