import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.layers.sequence_encoder import CausalSelfAttentionEncoder, MultiHeadSelfAttention

RNG = np.random.default_rng(0)
DIM = 4
ITEMS = RNG.normal(size=(3, 5, DIM)).astype(np.float32)
# Most recent first, padding at the end; the last user has no behaviour at all.
MASK = np.array([[True, True, True, True, False], [True, True, False, False, False], [False] * 5])


def with_garbage(items, mask, value):
    return np.where(mask[..., None], items, value).astype(np.float32)


def layer_norm(x, gamma, beta, epsilon):
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


def numpy_attention(inputs, allowed, weights, num_heads):
    """Multi-head attention by hand; `allowed` [B, N, N]; a query without keys gets zero weights."""
    (wq, bq), (wk, bk), (wv, bv), (wo, bo) = weights
    queries, keys, values = inputs @ wq + bq, inputs @ wk + bk, inputs @ wv + bv
    batch, length, dim = queries.shape
    width = dim // num_heads
    context = np.zeros_like(queries)
    for b in range(batch):
        for h in range(num_heads):
            part = slice(h * width, (h + 1) * width)
            for i in range(length):
                keys_i = np.flatnonzero(allowed[b, i])
                if keys_i.size == 0:
                    continue
                scores = keys[b, keys_i, part] @ queries[b, i, part] / np.sqrt(width)
                probabilities = np.exp(scores - scores.max())
                probabilities /= probabilities.sum()
                context[b, i, part] = probabilities @ values[b, keys_i, part]
    return context @ wo + bo


def hand_weights(dim, rng):
    return [(rng.normal(size=(dim, dim)).astype(np.float32) * 0.5, rng.normal(size=dim).astype(np.float32) * 0.1)
            for _ in range(4)]


def set_attention(attention, weights):
    for dense, values in zip([attention.query, attention.key, attention.value, attention.output_projection],
                             weights):
        dense.set_weights(list(values))


@pytest.mark.parametrize("num_heads", [1, 2])
def test_multi_head_attention_matches_numpy(num_heads):
    inputs = RNG.normal(size=(2, 3, DIM)).astype(np.float32)
    allowed = np.array([[[True, True, False], [False, True, True], [False, False, False]],
                        [[True, False, False], [True, True, True], [False, True, False]]])
    attention = MultiHeadSelfAttention(DIM, num_heads=num_heads)
    attention(tf.constant(inputs), tf.constant(allowed))
    weights = hand_weights(DIM, RNG)
    set_attention(attention, weights)
    outputs = attention(tf.constant(inputs), tf.constant(allowed)).numpy()
    np.testing.assert_allclose(outputs, numpy_attention(inputs, allowed, weights, num_heads), rtol=1e-5, atol=1e-5)
    # A query with no allowed key: zero weights, so only the output bias remains.
    np.testing.assert_allclose(outputs[0, 2], weights[3][1], rtol=1e-6)


def test_multi_head_attention_rejects_a_width_the_heads_do_not_split():
    with pytest.raises(ValueError, match="multiple of num_heads"):
        MultiHeadSelfAttention(5, num_heads=2)


def set_encoder_by_hand(encoder, rng):
    """Sets every weight of `encoder` to random values; returns them for the NumPy reference."""
    positions = rng.normal(size=(encoder.max_length, DIM)).astype(np.float32)
    encoder.position_embedding.set_weights([positions])
    blocks = []
    for block in encoder.blocks:
        norms = [(1.0 + 0.2 * rng.normal(size=DIM).astype(np.float32), 0.1 * rng.normal(size=DIM).astype(np.float32))
                 for _ in range(2)]
        attention = hand_weights(DIM, rng)
        ffn = hand_weights(DIM, rng)[:2]
        block.attention_norm.set_weights(list(norms[0]))
        block.feed_forward_norm.set_weights(list(norms[1]))
        set_attention(block.attention, attention)
        block.hidden.set_weights(list(ffn[0]))
        block.projection.set_weights(list(ffn[1]))
        blocks.append((norms, attention, ffn))
    final = (1.0 + 0.2 * rng.normal(size=DIM).astype(np.float32), 0.1 * rng.normal(size=DIM).astype(np.float32))
    encoder.final_norm.set_weights(list(final))
    return positions, blocks, final


def numpy_encoder(items, mask, positions, blocks, final, num_heads):
    length = items.shape[1]
    x = np.where(mask[..., None], items, 0.0) + positions[:length]
    older_or_same = np.arange(length)[None, :] >= np.arange(length)[:, None]
    allowed = older_or_same[None] & mask[:, None, :]
    for norms, attention, ((w1, b1), (w2, b2)) in blocks:
        x = x + numpy_attention(layer_norm(x, *norms[0], 1e-8), allowed, attention, num_heads)
        x = x + np.maximum(layer_norm(x, *norms[1], 1e-8) @ w1 + b1, 0.0) @ w2 + b2
    return np.where(mask[..., None], layer_norm(x, *final, 1e-8), 0.0)


@pytest.mark.parametrize("num_heads", [1, 2])
def test_encoder_matches_a_numpy_sasrec_stack(num_heads):
    encoder = CausalSelfAttentionEncoder(max_length=6, dim=DIM, num_blocks=2, num_heads=num_heads, dropout=0.3)
    encoder(tf.constant(ITEMS), tf.constant(MASK))
    reference = set_encoder_by_hand(encoder, np.random.default_rng(num_heads))
    outputs = encoder(tf.constant(ITEMS), tf.constant(MASK), training=False).numpy()
    np.testing.assert_allclose(outputs, numpy_encoder(ITEMS, MASK, *reference, num_heads), rtol=1e-4, atol=1e-4)


def seeded_encoder(seed=3, **kwargs):
    return CausalSelfAttentionEncoder(max_length=6, dim=DIM, num_heads=2, seed=seed, **kwargs)


def test_position_zero_sees_older_items_and_no_position_sees_newer_ones():
    encoder = seeded_encoder()
    base = encoder(tf.constant(ITEMS), tf.constant(MASK)).numpy()
    # Not a constant shift, which the layer norms would hide.
    change = np.array([1.0, -0.5, 0.25, 0.0], np.float32)
    older = ITEMS.copy()
    older[0, 3] += change  # the oldest valid item of user 0
    changed = encoder(tf.constant(older), tf.constant(MASK)).numpy()
    assert np.abs(changed[0, :4] - base[0, :4]).max(axis=-1).min() > 1e-3  # every position up to it reads it
    np.testing.assert_array_equal(changed[1:], base[1:])
    newer = ITEMS.copy()
    newer[0, 0] += change  # the most recent item
    changed = encoder(tf.constant(newer), tf.constant(MASK)).numpy()
    assert np.abs(changed[0, 0] - base[0, 0]).max() > 1e-3
    np.testing.assert_allclose(changed[0, 1:], base[0, 1:], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("training", [False, True])
def test_padded_positions_change_nothing(training):
    encoder = seeded_encoder(dropout=0.0 if training else 0.2)
    clean = encoder(tf.constant(ITEMS), tf.constant(MASK), training=training).numpy()
    np.testing.assert_array_equal(clean[~MASK], 0.0)
    for garbage in (1e6, np.nan, -np.inf):
        noisy = encoder(tf.constant(with_garbage(ITEMS, MASK, garbage)), tf.constant(MASK), training=training)
        np.testing.assert_allclose(noisy.numpy(), clean, rtol=1e-6, atol=1e-6)
    # Dropping the padded column changes nothing either.
    truncated = encoder(tf.constant(ITEMS[:, :4]), tf.constant(MASK[:, :4]), training=training).numpy()
    np.testing.assert_allclose(truncated, clean[:, :4], rtol=1e-5, atol=1e-6)


def test_an_all_padding_row_gives_zeros_and_leaves_the_others_alone():
    encoder = seeded_encoder()
    outputs = encoder(tf.constant(ITEMS), tf.constant(MASK)).numpy()
    assert np.isfinite(outputs).all()
    np.testing.assert_array_equal(outputs[2], 0.0)
    alone = encoder(tf.constant(ITEMS[:1]), tf.constant(MASK[:1])).numpy()
    np.testing.assert_allclose(alone, outputs[:1], rtol=1e-6, atol=1e-6)


def test_dropout_acts_only_in_training():
    encoder = seeded_encoder(dropout=0.5)
    inference = encoder(tf.constant(ITEMS), tf.constant(MASK), training=False).numpy()
    np.testing.assert_array_equal(encoder(tf.constant(ITEMS), tf.constant(MASK)).numpy(), inference)
    training = encoder(tf.constant(ITEMS), tf.constant(MASK), training=True).numpy()
    assert np.abs(training[MASK] - inference[MASK]).max() > 1e-3


def test_gradients_reach_the_inputs_and_every_variable():
    encoder = seeded_encoder(dropout=0.1)
    items = tf.constant(ITEMS)
    with tf.GradientTape() as tape:
        tape.watch(items)
        outputs = encoder(items, tf.constant(MASK), training=True)
        loss = tf.reduce_sum(outputs[:, 0] * [1.0, -2.0, 3.0, 0.5])
    gradients = tape.gradient(loss, [items] + encoder.trainable_variables)
    assert len(encoder.trainable_variables) == 1 + 2 * 16 + 2  # positions, 2 blocks, final norm
    for gradient in gradients:
        assert gradient is not None and np.isfinite(tf.convert_to_tensor(gradient).numpy()).all()
    assert all(np.abs(tf.convert_to_tensor(gradient).numpy()).sum() > 0 for gradient in gradients)
    np.testing.assert_array_equal(gradients[0].numpy()[~MASK], 0.0)  # padded inputs get no gradient


def test_same_seed_same_encoder_and_config_round_trip():
    first, second, other = seeded_encoder(seed=5), seeded_encoder(seed=5), seeded_encoder(seed=6)
    outputs = first(tf.constant(ITEMS), tf.constant(MASK)).numpy()
    np.testing.assert_array_equal(second(tf.constant(ITEMS), tf.constant(MASK)).numpy(), outputs)
    assert np.abs(other(tf.constant(ITEMS), tf.constant(MASK)).numpy() - outputs).max() > 1e-3
    clone = CausalSelfAttentionEncoder.from_config(first.get_config())
    assert clone.get_config() == first.get_config()
    np.testing.assert_array_equal(clone(tf.constant(ITEMS), tf.constant(MASK)).numpy(), outputs)
    # The query, key and value kernels of a block do not start equal.
    attention = first.blocks[0].attention
    assert not np.allclose(attention.query.kernel.numpy(), attention.key.kernel.numpy())


def test_works_in_a_tf_function_with_any_length_up_to_max_length(grappler):
    encoder = seeded_encoder()

    @tf.function(input_signature=[tf.TensorSpec([None, None, DIM]), tf.TensorSpec([None, None], tf.bool)])
    def encode(items, mask):
        return encoder(items, mask)

    for length in (5, 2):
        compiled = encode(tf.constant(ITEMS[:, :length]), tf.constant(MASK[:, :length]))
        eager = encoder(tf.constant(ITEMS[:, :length]), tf.constant(MASK[:, :length]))
        np.testing.assert_allclose(compiled.numpy(), eager.numpy(), rtol=1e-5, atol=1e-6)
    too_short = CausalSelfAttentionEncoder(max_length=4, dim=DIM)
    with pytest.raises(tf.errors.InvalidArgumentError, match="exceeds max_length"):
        too_short(tf.constant(ITEMS), tf.constant(MASK))

    @tf.function(input_signature=[tf.TensorSpec([None, None, DIM]), tf.TensorSpec([None, None], tf.bool)])
    def encode_too_long(items, mask):
        return too_short(items, mask)

    with pytest.raises(tf.errors.InvalidArgumentError, match="exceeds max_length"):
        encode_too_long(tf.constant(ITEMS), tf.constant(MASK))


def test_encoder_under_mixed_precision():
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        encoder = seeded_encoder()
        outputs = encoder(tf.constant(ITEMS), tf.constant(MASK), training=True)
        assert outputs.dtype == tf.float16
        assert np.isfinite(outputs.numpy()).all()
        np.testing.assert_array_equal(outputs.numpy()[~MASK], 0.0)
        assert all(variable.dtype == tf.float32 for variable in encoder.trainable_variables)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
