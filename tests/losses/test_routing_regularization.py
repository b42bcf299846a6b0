import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.losses.routing_regularization import routing_regularization_loss

RNG = np.random.default_rng(0)


def numpy_loss(routing, mask, dim):
    """REMI's penalty with the full covariance: mean over users of ||diag(C C^T / dim)||^2."""
    per_user = []
    for a, valid in zip(routing, mask):
        centred = np.zeros_like(a)
        if valid.any():
            centred[:, valid] = a[:, valid] - a[:, valid].mean(axis=-1, keepdims=True)
        covariance = centred @ centred.T / dim
        per_user.append((np.diag(covariance) ** 2).sum())
    return np.mean(per_user)


def test_by_hand():
    # Row [1, 0, 0]: mean 1/3, C = [2/3, -1/3, -1/3], sum C^2 = 2/3, / dim 2 -> 1/3.
    # Row [0.5, 0.5, 0]: mean 1/3, C = [1/6, 1/6, -1/3], sum C^2 = 1/6, / 2 -> 1/12.
    # User loss 1/9 + 1/144 = 17/144; a uniform second user adds 0 -> batch mean 17/288.
    routing = tf.constant([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]],
                           [[1 / 3, 1 / 3, 1 / 3], [1 / 3, 1 / 3, 1 / 3]]])
    assert float(routing_regularization_loss(routing, dim=2)) == pytest.approx(17 / 288, rel=1e-6)
    assert float(routing_regularization_loss(routing[:1], dim=2)) == pytest.approx(17 / 144, rel=1e-6)
    assert float(routing_regularization_loss(routing[:1], dim=4)) == pytest.approx(17 / 576, rel=1e-6)


def test_matches_a_numpy_reference_with_the_full_covariance():
    routing = RNG.uniform(size=(4, 3, 6)).astype(np.float32)
    mask = np.array([[True] * 6, [True] * 4 + [False] * 2, [True] + [False] * 5, [True] * 2 + [False] * 4])
    expected = numpy_loss(routing, mask, dim=8)
    assert float(routing_regularization_loss(tf.constant(routing), tf.constant(mask), dim=8)) == pytest.approx(
        expected, rel=1e-5)
    everything = np.ones_like(mask)
    assert float(routing_regularization_loss(tf.constant(routing), dim=8)) == pytest.approx(
        numpy_loss(routing, everything, dim=8), rel=1e-5)


def test_uniform_routing_gives_zero():
    assert float(routing_regularization_loss(tf.fill([2, 3, 5], 0.2), dim=16)) == pytest.approx(0.0, abs=1e-12)
    # Uniform over the valid positions, whatever the padded ones hold.
    mask = np.array([[True, True, False, False], [True, True, True, True]])
    routing = np.where(mask[:, None, :], np.where(mask.sum(-1) == 2, 0.5, 0.25)[:, None, None], 7.0)
    loss = routing_regularization_loss(tf.constant(routing.astype(np.float32)), tf.constant(mask), dim=4)
    assert float(loss) == pytest.approx(0.0, abs=1e-12)


def test_padded_entries_change_nothing_and_an_empty_row_counts_as_zero():
    routing = RNG.uniform(size=(3, 2, 4)).astype(np.float32)
    mask = np.array([[True, True, True, False], [True, True, False, False], [False] * 4])
    clean = float(routing_regularization_loss(tf.constant(routing), tf.constant(mask), dim=4))
    assert np.isfinite(clean) and clean > 0
    for garbage in (1e6, np.nan, -np.inf):
        noisy = np.where(mask[:, None, :], routing, garbage).astype(np.float32)
        assert float(routing_regularization_loss(tf.constant(noisy), tf.constant(mask), dim=4)) == pytest.approx(
            clean, rel=1e-6)
    # The empty third user adds 0 to the sum and 1 to the count.
    two_users = float(routing_regularization_loss(tf.constant(routing[:2]), tf.constant(mask[:2]), dim=4))
    assert clean == pytest.approx(two_users * 2 / 3, rel=1e-6)


def test_gradient_descent_spreads_the_routing():
    logits = tf.Variable(RNG.normal(size=(2, 3, 5)).astype(np.float32) * 3)
    mask = tf.constant([[True] * 5, [True] * 3 + [False] * 2])
    with tf.GradientTape() as tape:
        loss = routing_regularization_loss(tf.nn.softmax(logits, axis=-1), mask, dim=2)
    gradient = tape.gradient(loss, logits)
    assert np.isfinite(gradient.numpy()).all() and np.abs(gradient.numpy()).sum() > 0
    logits.assign_sub(0.5 * gradient)
    assert float(routing_regularization_loss(tf.nn.softmax(logits, axis=-1), mask, dim=2)) < float(loss)


def test_float16_routing_gives_a_float32_loss_and_bad_dims_are_rejected():
    routing = tf.constant([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]], tf.float16)
    loss = routing_regularization_loss(routing, dim=2)
    assert loss.dtype == tf.float32
    assert float(loss) == pytest.approx(17 / 144, rel=1e-3)
    with pytest.raises(ValueError, match="dim"):
        routing_regularization_loss(routing, dim=0)


def test_works_in_a_tf_function_with_any_shape():
    @tf.function(input_signature=[tf.TensorSpec([None, None, None]), tf.TensorSpec([None, None], tf.bool)])
    def loss(routing, mask):
        return routing_regularization_loss(routing, mask, dim=4)

    for length in (6, 3):
        routing = RNG.uniform(size=(2, 3, length)).astype(np.float32)
        mask = np.arange(length)[None, :] < np.array([[length], [2]])
        assert float(loss(tf.constant(routing), tf.constant(mask))) == pytest.approx(
            numpy_loss(routing, mask, dim=4), rel=1e-5)
