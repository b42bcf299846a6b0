import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.layers.interest_readout import (InterestSelfAttention, TargetAwareInterestAttention,
                                                 label_aware_attention)

RNG = np.random.default_rng(0)
DIM, K = 4, 3
INTERESTS = RNG.normal(size=(3, K, DIM)).astype(np.float32)
TARGET = RNG.normal(size=(3, DIM)).astype(np.float32)
MASK = np.array([[True, True, True], [True, False, True], [False, False, False]])


def with_garbage(interests, mask, value):
    return np.where(mask[..., None], interests, value).astype(np.float32)


def numpy_masked_softmax(scores, mask):
    weights = np.zeros_like(scores)
    for row in range(scores.shape[0]):
        if mask[row].any():
            exponentials = np.exp(scores[row, mask[row]] - scores[row, mask[row]].max())
            weights[row, mask[row]] = exponentials / exponentials.sum()
    return weights


# ---------------------------------------------------------------- label-aware attention

# Dot products with the target [1, 1]: user 0 -> [1, 3, -2] (interest 1), user 1 -> [0.5, -1, 0.2] (interest 0).
HAND_INTERESTS = np.array([[[1.0, 0.0], [2.0, 1.0], [-1.0, -1.0]],
                           [[0.5, 0.0], [0.0, -1.0], [0.1, 0.1]]], np.float32)
HAND_TARGET = np.array([[1.0, 1.0], [1.0, 1.0]], np.float32)


def test_hard_readout_picks_the_interest_with_the_largest_dot_product():
    user, selected = label_aware_attention(tf.constant(HAND_INTERESTS), tf.constant(HAND_TARGET), None)
    np.testing.assert_array_equal(selected.numpy(), [1, 0])
    assert selected.dtype == tf.int32
    np.testing.assert_array_equal(user.numpy(), [[2.0, 1.0], [0.5, 0.0]])


def test_power_zero_is_the_mean_and_a_large_power_approaches_the_argmax():
    user, selected = label_aware_attention(tf.constant(HAND_INTERESTS), tf.constant(HAND_TARGET), 0.0)
    np.testing.assert_allclose(user.numpy(), HAND_INTERESTS.mean(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(selected.numpy(), [1, 0])
    user, _ = label_aware_attention(tf.constant(HAND_INTERESTS), tf.constant(HAND_TARGET), 200.0)
    np.testing.assert_allclose(user.numpy(), [[2.0, 1.0], [0.5, 0.0]], atol=1e-6)


def test_soft_readout_is_a_softmax_of_power_times_the_dot_products():
    scores = np.array([[1.0, 3.0, -2.0], [0.5, -1.0, 0.2]])
    for power in (0.5, 2.0):
        weights = np.exp(power * scores) / np.exp(power * scores).sum(axis=-1, keepdims=True)
        user, _ = label_aware_attention(tf.constant(HAND_INTERESTS), tf.constant(HAND_TARGET), power)
        np.testing.assert_allclose(user.numpy(), np.einsum("bk,bkd->bd", weights, HAND_INTERESTS), rtol=1e-5)


def test_hard_readout_sends_gradients_to_the_selected_interest_only():
    interests = tf.constant(HAND_INTERESTS)
    with tf.GradientTape() as tape:
        tape.watch(interests)
        user, _ = label_aware_attention(interests, tf.constant(HAND_TARGET), None)
        loss = tf.reduce_sum(user * [[1.0, 2.0]])
    gradient = tape.gradient(loss, interests).numpy()
    expected = np.zeros_like(HAND_INTERESTS)
    expected[0, 1] = expected[1, 0] = [1.0, 2.0]
    np.testing.assert_array_equal(gradient, expected)


def test_soft_readout_passes_gradients_to_the_target_too():
    target = tf.constant(HAND_TARGET)
    with tf.GradientTape() as tape:
        tape.watch(target)
        user, _ = label_aware_attention(tf.constant(HAND_INTERESTS), target, 1.0)
        loss = tf.reduce_sum(user)
    assert np.abs(tape.gradient(loss, target).numpy()).sum() > 0


def test_label_aware_attention_keeps_float16_and_rejects_a_negative_power():
    user, _ = label_aware_attention(tf.constant(HAND_INTERESTS, tf.float16), tf.constant(HAND_TARGET, tf.float16),
                                    1.0)
    assert user.dtype == tf.float16
    with pytest.raises(ValueError, match="power"):
        label_aware_attention(tf.constant(HAND_INTERESTS), tf.constant(HAND_TARGET), -1.0)


# ---------------------------------------------------------------- target-aware attention

KERNEL = RNG.normal(size=(DIM, DIM)).astype(np.float32)


def hand_set_target_attention():
    attention = TargetAwareInterestAttention(DIM)
    attention(tf.constant(INTERESTS), tf.constant(TARGET), tf.constant(MASK))
    attention.query_projection.set_weights([KERNEL])
    return attention


def test_target_aware_attention_matches_numpy():
    pooled, weights = hand_set_target_attention()(tf.constant(INTERESTS), tf.constant(TARGET), tf.constant(MASK),
                                                  return_weights=True)
    scores = np.einsum("bkd,bd->bk", INTERESTS, TARGET @ KERNEL) / np.sqrt(DIM)
    expected = numpy_masked_softmax(scores, MASK)
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(weights.numpy().sum(axis=-1), [1.0, 1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(pooled.numpy(), np.einsum("bk,bkd->bd", expected, INTERESTS), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(pooled.numpy()[2], 0.0)  # no valid interest


def test_target_aware_attention_ignores_masked_interests_and_defaults_to_all_valid():
    attention = hand_set_target_attention()
    clean = attention(tf.constant(INTERESTS), tf.constant(TARGET), tf.constant(MASK)).numpy()
    for garbage in (1e6, np.nan, -np.inf):
        noisy = attention(tf.constant(with_garbage(INTERESTS, MASK, garbage)), tf.constant(TARGET),
                          tf.constant(MASK))
        np.testing.assert_allclose(noisy.numpy(), clean, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(attention(tf.constant(INTERESTS), tf.constant(TARGET)).numpy(),
                               attention(tf.constant(INTERESTS), tf.constant(TARGET),
                                         tf.ones([3, K], tf.bool)).numpy(), rtol=1e-6)


def test_target_aware_attention_gradients_seeds_and_config():
    attention = TargetAwareInterestAttention(DIM, seed=3)
    interests, target = tf.constant(INTERESTS), tf.constant(TARGET)
    with tf.GradientTape() as tape:
        tape.watch([interests, target])
        loss = tf.reduce_sum(attention(interests, target, tf.constant(MASK)) * [1.0, -1.0, 2.0, 0.5])
    gradients = tape.gradient(loss, [interests, target] + attention.trainable_variables)
    assert len(attention.trainable_variables) == 1  # the query kernel, no bias
    for gradient in gradients:
        assert gradient is not None and np.abs(gradient.numpy()).sum() > 0
    np.testing.assert_array_equal(gradients[0].numpy()[~MASK], 0.0)
    same, other = TargetAwareInterestAttention(DIM, seed=3), TargetAwareInterestAttention(DIM, seed=4)
    outputs = attention(interests, target, tf.constant(MASK)).numpy()
    np.testing.assert_array_equal(same(interests, target, tf.constant(MASK)).numpy(), outputs)
    assert np.abs(other(interests, target, tf.constant(MASK)).numpy() - outputs).max() > 1e-4
    clone = TargetAwareInterestAttention.from_config(attention.get_config())
    np.testing.assert_array_equal(clone(interests, target, tf.constant(MASK)).numpy(), outputs)
    with pytest.raises(ValueError, match="width"):
        TargetAwareInterestAttention(DIM + 1)(interests, target)


# ---------------------------------------------------------------- interest self-attention


def layer_norm(x, gamma, beta, epsilon=1e-6):
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


def numpy_interest_self_attention(interests, mask, weights, norm, num_heads):
    (wq, bq), (wk, bk), (wv, bv), (wo, bo) = weights
    x = np.where(mask[..., None], interests, 0.0)
    queries, keys, values = x @ wq + bq, x @ wk + bk, x @ wv + bv
    width = DIM // num_heads
    context = np.zeros_like(x)
    for b in range(x.shape[0]):
        for h in range(num_heads):
            part = slice(h * width, (h + 1) * width)
            scores = queries[b, :, part] @ keys[b, :, part].T / np.sqrt(width)  # [K, K]
            weights_bh = numpy_masked_softmax(scores, np.broadcast_to(mask[b], scores.shape))
            context[b, :, part] = weights_bh @ values[b, :, part]
    outputs = layer_norm(x + context @ wo + bo, *norm)
    return np.where(mask[..., None], outputs, 0.0)


@pytest.mark.parametrize("num_heads", [1, 2])
def test_interest_self_attention_matches_numpy(num_heads):
    block = InterestSelfAttention(DIM, num_heads=num_heads)
    block(tf.constant(INTERESTS), tf.constant(MASK))
    weights = [(RNG.normal(size=(DIM, DIM)).astype(np.float32) * 0.5, RNG.normal(size=DIM).astype(np.float32) * 0.1)
               for _ in range(4)]
    attention = block.attention
    for dense, values in zip([attention.query, attention.key, attention.value, attention.output_projection],
                             weights):
        dense.set_weights(list(values))
    norm = (1.0 + 0.2 * RNG.normal(size=DIM).astype(np.float32), 0.1 * RNG.normal(size=DIM).astype(np.float32))
    block.norm.set_weights(list(norm))
    outputs = block(tf.constant(INTERESTS), tf.constant(MASK)).numpy()
    expected = numpy_interest_self_attention(INTERESTS, MASK, weights, norm, num_heads)
    np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(outputs[~MASK], 0.0)


def test_interest_self_attention_ignores_masked_interests():
    block = InterestSelfAttention(DIM, num_heads=2, seed=1)
    clean = block(tf.constant(INTERESTS), tf.constant(MASK)).numpy()
    assert np.isfinite(clean).all()
    for garbage in (1e6, np.nan, -np.inf):
        noisy = block(tf.constant(with_garbage(INTERESTS, MASK, garbage)), tf.constant(MASK))
        np.testing.assert_allclose(noisy.numpy(), clean, rtol=1e-6, atol=1e-6)
    # User 1 without its masked middle interest gives the same outputs for the other two.
    kept = block(tf.constant(INTERESTS[1:2, [0, 2]]), tf.constant([[True, True]])).numpy()
    np.testing.assert_allclose(kept[0], clean[1, [0, 2]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(block(tf.constant(INTERESTS)).numpy(),
                               block(tf.constant(INTERESTS), tf.ones([3, K], tf.bool)).numpy(), rtol=1e-6)


def test_interest_self_attention_gradients_seeds_and_config():
    block = InterestSelfAttention(DIM, num_heads=2, seed=5)
    interests = tf.constant(INTERESTS)
    with tf.GradientTape() as tape:
        tape.watch(interests)
        loss = tf.reduce_sum(block(interests, tf.constant(MASK)) * [1.0, -1.0, 2.0, 0.5])
    gradients = tape.gradient(loss, [interests] + block.trainable_variables)
    assert len(block.trainable_variables) == 10  # 4 projections with biases, layer-norm gamma and beta
    for gradient in gradients:
        assert gradient is not None and np.abs(gradient.numpy()).sum() > 0
    outputs = block(interests, tf.constant(MASK)).numpy()
    np.testing.assert_array_equal(InterestSelfAttention(DIM, 2, seed=5)(interests, tf.constant(MASK)).numpy(),
                                  outputs)
    assert np.abs(InterestSelfAttention(DIM, 2, seed=6)(interests, tf.constant(MASK)).numpy() - outputs).max() > 1e-4
    clone = InterestSelfAttention.from_config(block.get_config())
    np.testing.assert_array_equal(clone(interests, tf.constant(MASK)).numpy(), outputs)


def test_readout_layers_in_a_tf_function_and_under_mixed_precision():
    attention, block = TargetAwareInterestAttention(DIM, seed=0), InterestSelfAttention(DIM, seed=0)

    @tf.function(input_signature=[tf.TensorSpec([None, None, DIM]), tf.TensorSpec([None, DIM]),
                                  tf.TensorSpec([None, None], tf.bool)])
    def read(interests, target, mask):
        return attention(block(interests, mask), target, mask), label_aware_attention(interests, target, None)[0]

    for count in (3, 2):
        compiled = read(tf.constant(INTERESTS[:, :count]), tf.constant(TARGET), tf.constant(MASK[:, :count]))
        np.testing.assert_allclose(
            compiled[0].numpy(),
            attention(block(tf.constant(INTERESTS[:, :count]), tf.constant(MASK[:, :count])), tf.constant(TARGET),
                      tf.constant(MASK[:, :count])).numpy(), rtol=1e-5, atol=1e-6)
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        attention, block = TargetAwareInterestAttention(DIM, seed=0), InterestSelfAttention(DIM, seed=0)
        pooled = attention(block(tf.constant(INTERESTS), tf.constant(MASK)), tf.constant(TARGET), tf.constant(MASK))
        assert pooled.dtype == tf.float16 and np.isfinite(pooled.numpy()).all()
        np.testing.assert_array_equal(pooled.numpy()[2], 0.0)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
