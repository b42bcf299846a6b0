import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.layers.target_attention import TargetAttention

RNG = np.random.default_rng(0)
QUERY = RNG.normal(size=(2, 3)).astype(np.float32)
KEYS = RNG.normal(size=(2, 4, 3)).astype(np.float32)
MASK = np.array([[True, True, True, False], [True, False, False, False]])
SCORE_KERNEL = RNG.normal(size=(12, 1)).astype(np.float32)
SCORE_BIAS = np.array([0.3], np.float32)


def with_garbage(keys, mask, value=1e6):
    return np.where(mask[..., None], keys, value).astype(np.float32)


def attention_features(query, keys):
    queries = np.broadcast_to(query[:, None, :], keys.shape)
    return np.concatenate([keys, queries, keys - queries, keys * queries], axis=-1)


def linear_scores(query, keys):
    return (attention_features(query, keys) @ SCORE_KERNEL)[..., 0] + SCORE_BIAS[0]


def linear_attention(normalization):
    """An attention MLP with no hidden layer, its score layer set by hand."""
    attention = TargetAttention(hidden_units=(), normalization=normalization)
    attention(tf.constant(QUERY), tf.constant(KEYS), tf.constant(MASK))
    attention.score_layer.set_weights([SCORE_KERNEL, SCORE_BIAS])
    return attention


def test_din_form_pools_with_the_raw_scores():
    pooled, weights = linear_attention("none")(tf.constant(QUERY), tf.constant(KEYS), tf.constant(MASK),
                                               return_weights=True)
    scores = linear_scores(QUERY, KEYS) * MASK
    np.testing.assert_allclose(weights.numpy(), scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pooled.numpy(), np.einsum("bl,bld->bd", scores, KEYS), rtol=1e-5, atol=1e-6)


def test_softmax_form_pools_with_a_masked_softmax():
    pooled, weights = linear_attention("softmax")(tf.constant(QUERY), tf.constant(KEYS), tf.constant(MASK),
                                                  return_weights=True)
    scores = linear_scores(QUERY, KEYS)
    expected = np.zeros_like(scores)
    for row in range(2):
        valid = MASK[row]
        exponentials = np.exp(scores[row, valid] - scores[row, valid].max())
        expected[row, valid] = exponentials / exponentials.sum()
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights.numpy().sum(axis=-1), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(weights.numpy()[1], [1.0, 0.0, 0.0, 0.0], rtol=1e-6)  # one valid behaviour
    np.testing.assert_allclose(pooled.numpy(), np.einsum("bl,bld->bd", expected, KEYS), rtol=1e-5, atol=1e-6)


def test_hidden_layer_with_a_plain_activation_matches_numpy():
    attention = TargetAttention(hidden_units=(2,), activation="sigmoid")
    attention(tf.constant(QUERY), tf.constant(KEYS), tf.constant(MASK))
    hidden_kernel = RNG.normal(size=(12, 2)).astype(np.float32)
    hidden_bias = np.array([0.1, -0.2], np.float32)
    score_kernel = np.array([[1.5], [-0.5]], np.float32)
    attention.hidden_layers[0].set_weights([hidden_kernel, hidden_bias])
    attention.score_layer.set_weights([score_kernel, np.zeros(1, np.float32)])
    hidden = 1.0 / (1.0 + np.exp(-(attention_features(QUERY, KEYS) @ hidden_kernel + hidden_bias)))
    scores = (hidden @ score_kernel)[..., 0] * MASK
    pooled = attention(tf.constant(QUERY), tf.constant(KEYS), tf.constant(MASK))
    np.testing.assert_allclose(pooled.numpy(), np.einsum("bl,bld->bd", scores, KEYS), rtol=1e-5, atol=1e-6)


def test_dice_hidden_layer_in_inference_uses_the_initial_moving_statistics():
    # Fresh Dice in inference: mean 0, variance 1, alpha 0 -> f(x) = sigmoid(x) * x.
    attention = TargetAttention(hidden_units=(2,), activation="dice")
    attention(tf.constant(QUERY), tf.constant(KEYS), tf.constant(MASK))
    hidden_kernel = RNG.normal(size=(12, 2)).astype(np.float32)
    attention.hidden_layers[0].set_weights([hidden_kernel, np.zeros(2, np.float32)])
    attention.score_layer.set_weights([np.array([[1.0], [2.0]], np.float32), np.zeros(1, np.float32)])
    pre = attention_features(QUERY, KEYS) @ hidden_kernel
    scores = ((pre / (1.0 + np.exp(-pre))) @ np.array([1.0, 2.0]))
    pooled, weights = attention(tf.constant(QUERY), tf.constant(KEYS), tf.constant(MASK), training=False,
                                return_weights=True)
    np.testing.assert_allclose(weights.numpy(), scores * MASK, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("activation", ["dice", "prelu"])
@pytest.mark.parametrize("normalization", ["none", "softmax"])
@pytest.mark.parametrize("training", [False, True])
def test_padded_positions_change_nothing(activation, normalization, training):
    attention = TargetAttention(hidden_units=(5, 4), activation=activation, normalization=normalization, seed=3)
    mask = tf.constant(MASK)
    clean = attention(tf.constant(QUERY), tf.constant(KEYS), mask, training=training, return_weights=True)
    for garbage in (1e6, np.nan, -np.inf):
        noisy = attention(tf.constant(QUERY), tf.constant(with_garbage(KEYS, MASK, garbage)), mask,
                          training=training, return_weights=True)
        for expected, actual in zip(clean, noisy):
            np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-6, atol=1e-7)
    # Dropping a padded column gives the same result too: padding stays out of Dice's batch statistics.
    truncated = attention(tf.constant(QUERY), tf.constant(KEYS[:, :3]), tf.constant(MASK[:, :3]), training=training)
    np.testing.assert_allclose(truncated.numpy(), clean[0].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("normalization", ["none", "softmax"])
def test_an_all_padding_row_pools_to_zeros(normalization):
    attention = TargetAttention(hidden_units=(4,), normalization=normalization, seed=1)
    mask = tf.constant([[False] * 4, [True, False, False, False]])
    pooled, weights = attention(tf.constant(QUERY), tf.constant(KEYS), mask, training=True, return_weights=True)
    np.testing.assert_array_equal(pooled.numpy()[0], np.zeros(3))
    np.testing.assert_array_equal(weights.numpy()[0], np.zeros(4))
    assert np.isfinite(pooled.numpy()).all() and np.abs(pooled.numpy()[1]).sum() > 0


def test_no_mask_means_every_position_counts():
    attention = linear_attention("none")
    everything = tf.ones([2, 4], tf.bool)
    np.testing.assert_allclose(attention(tf.constant(QUERY), tf.constant(KEYS)).numpy(),
                               attention(tf.constant(QUERY), tf.constant(KEYS), everything).numpy(), rtol=1e-6)


def test_gradients_reach_inputs_and_every_variable():
    attention = TargetAttention(hidden_units=(6, 3), activation="dice", normalization="softmax", seed=2)
    query, keys = tf.constant(QUERY), tf.constant(KEYS)
    with tf.GradientTape() as tape:
        tape.watch([query, keys])
        loss = tf.reduce_sum(attention(query, keys, tf.constant(MASK), training=True) * [1.0, -2.0, 3.0])
    gradients = tape.gradient(loss, [query, keys] + attention.trainable_variables)
    assert len(attention.trainable_variables) == 8  # kernel and bias of 3 Dense layers, 2 Dice alphas
    for gradient in gradients:
        assert gradient is not None and np.isfinite(gradient.numpy()).all()
    assert np.abs(gradients[0].numpy()).sum() > 0
    np.testing.assert_array_equal(gradients[1].numpy()[~MASK], 0.0)  # padded keys get no gradient


def test_works_in_a_tf_function_with_any_sequence_length():
    attention = TargetAttention(hidden_units=(4,), normalization="softmax", seed=0)

    @tf.function(input_signature=[tf.TensorSpec([None, 3]), tf.TensorSpec([None, None, 3]),
                                  tf.TensorSpec([None, None], tf.bool)])
    def pool(query, keys, mask):
        return attention(query, keys, mask, return_weights=True)

    for length in (4, 2):
        pooled, weights = pool(tf.constant(QUERY), tf.constant(KEYS[:, :length]), tf.constant(MASK[:, :length]))
        eager_pooled, eager_weights = attention(tf.constant(QUERY), tf.constant(KEYS[:, :length]),
                                                tf.constant(MASK[:, :length]), return_weights=True)
        np.testing.assert_allclose(pooled.numpy(), eager_pooled.numpy(), rtol=1e-5, atol=1e-6)
        assert weights.shape == (2, length)


def test_seeded_config_round_trip_rebuilds_the_same_layer():
    attention = TargetAttention(hidden_units=(5, 2), activation="prelu", normalization="softmax", seed=7)
    clone = TargetAttention.from_config(attention.get_config())
    assert clone.get_config() == attention.get_config()
    original = attention(tf.constant(QUERY), tf.constant(KEYS), tf.constant(MASK))
    np.testing.assert_allclose(clone(tf.constant(QUERY), tf.constant(KEYS), tf.constant(MASK)).numpy(),
                               original.numpy(), rtol=1e-6)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="normalization"):
        TargetAttention(normalization="sigmoid")
    with pytest.raises(ValueError, match="same last dimension"):
        TargetAttention()(tf.constant(QUERY), tf.constant(KEYS[..., :2]))


@pytest.mark.parametrize("normalization", ["none", "softmax"])
def test_target_attention_under_mixed_precision(normalization):
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        attention = TargetAttention(hidden_units=(4,), normalization=normalization, seed=0)
        pooled, weights = attention(tf.constant(QUERY), tf.constant(KEYS), tf.constant(MASK), training=True,
                                    return_weights=True)
        assert pooled.dtype == tf.float16 and weights.dtype == tf.float16
        assert np.isfinite(pooled.numpy()).all()
        if normalization == "softmax":
            np.testing.assert_allclose(weights.numpy().astype(np.float32).sum(axis=-1), [1.0, 1.0], rtol=1e-3)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
