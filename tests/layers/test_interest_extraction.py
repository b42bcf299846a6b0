import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.layers.interest_extraction import CapsuleInterestExtractor, SelfAttentiveInterests, squash

RNG = np.random.default_rng(0)
DIM, K = 4, 3
EMBEDDINGS = RNG.normal(size=(3, 5, DIM)).astype(np.float32)
# Most recent first, padding at the end; the last user has no behaviour at all.
MASK = np.array([[True, True, True, True, False], [True, True, False, False, False], [False] * 5])


def with_garbage(embeddings, mask, value):
    return np.where(mask[..., None], embeddings, value).astype(np.float32)


def numpy_squash(vectors):
    squared = (vectors ** 2).sum(axis=-1, keepdims=True)
    norm = np.sqrt(squared)
    return np.where(norm > 0, squared / (1.0 + squared) * vectors / np.where(norm > 0, norm, 1.0), 0.0)


def numpy_softmax(logits, axis):
    exponentials = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return exponentials / exponentials.sum(axis=axis, keepdims=True)


# ---------------------------------------------------------------- squash


def test_squash_by_hand():
    # |z| = 5 -> 25 / 26 * z / 5; a zero vector stays zero.
    squashed = squash(tf.constant([[3.0, 4.0], [0.0, 0.0], [0.0, -0.1]])).numpy()
    np.testing.assert_allclose(squashed[0], [25 / 26 * 0.6, 25 / 26 * 0.8], rtol=1e-6)
    np.testing.assert_array_equal(squashed[1], [0.0, 0.0])
    np.testing.assert_allclose(squashed[2], [0.0, -0.01 / 1.01], rtol=1e-5)
    # Along another axis: the columns are the vectors.
    np.testing.assert_allclose(squash(tf.constant([[3.0, 0.0], [4.0, 0.0]]), axis=0).numpy(),
                               [[25 / 26 * 0.6, 0.0], [25 / 26 * 0.8, 0.0]], rtol=1e-6)


def test_squash_keeps_directions_maps_norms_below_one_and_has_a_finite_gradient_at_zero():
    vectors = tf.constant(RNG.normal(size=(6, DIM)).astype(np.float32) * [[0.01], [0.1], [1], [3], [10], [0]])
    with tf.GradientTape() as tape:
        tape.watch(vectors)
        squashed = squash(vectors)
    gradient = tape.gradient(squashed, vectors).numpy()
    np.testing.assert_allclose(squashed.numpy(), numpy_squash(vectors.numpy()), rtol=1e-5, atol=1e-7)
    assert (np.linalg.norm(squashed.numpy(), axis=-1) < 1.0).all()
    assert np.isfinite(gradient).all()


# ---------------------------------------------------------------- capsule routing


def initial_logits(seed, length):
    """The documented routing initialisation: a Philox stateless N(0, 1) draw [L, K], seed [seed, 1]."""
    return tf.random.stateless_normal([length, K], seed=[seed, 1], alg="philox").numpy().T


def numpy_routing(embeddings, mask, kernel, initial, iterations):
    mapped = np.where(mask[..., None], embeddings, 0.0) @ kernel
    logits = np.broadcast_to(initial, (embeddings.shape[0],) + initial.shape)
    for _ in range(iterations):
        routing = numpy_softmax(logits, axis=1) * mask[:, None, :]
        interests = numpy_squash(np.einsum("bkl,bld->bkd", routing, mapped))
        logits = logits + np.einsum("bkd,bld->bkl", interests, mapped)
    return interests, routing


def capsules(iterations=3, seed=4, kernel=None):
    extractor = CapsuleInterestExtractor(K, DIM, iterations=iterations, seed=seed)
    extractor(tf.constant(EMBEDDINGS), tf.constant(MASK))
    if kernel is not None:
        extractor.bilinear.set_weights([kernel])
    return extractor


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_routing_matches_numpy_with_a_hand_set_bilinear_map(iterations):
    kernel = RNG.normal(size=(DIM, DIM)).astype(np.float32)
    extractor = capsules(iterations, seed=4, kernel=kernel)
    interests, routing = extractor(tf.constant(EMBEDDINGS), tf.constant(MASK), return_routing=True)
    expected_interests, expected_routing = numpy_routing(EMBEDDINGS, MASK, kernel, initial_logits(4, 5), iterations)
    np.testing.assert_allclose(routing.numpy(), expected_routing, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(interests.numpy(), expected_interests, rtol=1e-5, atol=1e-6)


def test_one_iteration_by_hand():
    # One behaviour, two interests, identity map: w = softmax_k(b0) and v_k = squash(w_k e).
    extractor = CapsuleInterestExtractor(2, 2, iterations=1, seed=9)
    embeddings, mask = tf.constant([[[3.0, 4.0]]]), tf.constant([[True]])
    extractor(embeddings, mask)
    extractor.bilinear.set_weights([np.eye(2, dtype=np.float32)])
    interests, routing = extractor(embeddings, mask, return_routing=True)
    b0 = tf.random.stateless_normal([1, 2], seed=[9, 1], alg="philox").numpy()[0]
    weights = np.exp(b0) / np.exp(b0).sum()
    np.testing.assert_allclose(routing.numpy()[0, :, 0], weights, rtol=1e-6)
    for k in range(2):
        norm = 5.0 * weights[k]
        np.testing.assert_allclose(interests.numpy()[0, k], norm ** 2 / (1 + norm ** 2) * np.array([0.6, 0.8]),
                                   rtol=1e-5)


def test_routing_weights_split_each_valid_behaviour_over_the_interests():
    _, routing = capsules()(tf.constant(EMBEDDINGS), tf.constant(MASK), return_routing=True)
    np.testing.assert_allclose(routing.numpy().sum(axis=1), MASK.astype(np.float32), rtol=1e-6)
    assert routing.dtype == tf.float32


def test_capsule_padding_changes_nothing_and_an_empty_row_gives_zero_interests():
    extractor = capsules()
    clean, routing = extractor(tf.constant(EMBEDDINGS), tf.constant(MASK), return_routing=True)
    for garbage in (1e6, np.nan, -np.inf):
        noisy = extractor(tf.constant(with_garbage(EMBEDDINGS, MASK, garbage)), tf.constant(MASK))
        np.testing.assert_allclose(noisy.numpy(), clean.numpy(), rtol=1e-6, atol=1e-7)
    # The routing initialisation of a position does not depend on the padded length.
    truncated = extractor(tf.constant(EMBEDDINGS[:, :4]), tf.constant(MASK[:, :4]))
    np.testing.assert_allclose(truncated.numpy(), clean.numpy(), rtol=1e-6, atol=1e-7)
    assert np.isfinite(clean.numpy()).all()
    np.testing.assert_array_equal(clean.numpy()[2], 0.0)
    np.testing.assert_array_equal(routing.numpy()[2], 0.0)


def test_routing_initialisation_is_fixed_by_the_seed_and_not_trained():
    first, second, other = capsules(seed=4), capsules(seed=4), capsules(seed=5)
    second.bilinear.set_weights(first.bilinear.get_weights())
    other.bilinear.set_weights(first.bilinear.get_weights())
    outputs = first(tf.constant(EMBEDDINGS), tf.constant(MASK)).numpy()
    np.testing.assert_array_equal(first(tf.constant(EMBEDDINGS), tf.constant(MASK)).numpy(), outputs)
    np.testing.assert_array_equal(second(tf.constant(EMBEDDINGS), tf.constant(MASK)).numpy(), outputs)
    # Same map, another routing seed: other initial logits, other interests.
    assert np.abs(other(tf.constant(EMBEDDINGS), tf.constant(MASK)).numpy() - outputs).max() > 1e-3
    assert [variable.name for variable in first.trainable_variables] == [first.bilinear.kernel.name]
    assert [weight.name for weight in first.non_trainable_weights] == [first.routing_seed.name]
    np.testing.assert_array_equal(first.routing_seed.numpy(), [4, 1])


def test_an_unseeded_extractor_keeps_its_routing_seed_in_its_weights():
    first, second = capsules(seed=None), capsules(seed=None)
    assert not np.array_equal(first.routing_seed.numpy(), second.routing_seed.numpy())
    second.set_weights(first.get_weights())  # what restoring a checkpoint does
    np.testing.assert_array_equal(second(tf.constant(EMBEDDINGS), tf.constant(MASK)).numpy(),
                                  first(tf.constant(EMBEDDINGS), tf.constant(MASK)).numpy())


def tf_squash(vectors):
    squared = tf.reduce_sum(tf.square(vectors), axis=-1, keepdims=True)
    return vectors * squared / (1.0 + squared) / tf.sqrt(squared)


def test_only_the_last_round_passes_gradients():
    # With earlier rounds behind stop_gradient, the gradient is that of squash(sum_l w_l S e_l)
    # with the final routing weights w held constant.
    extractor = capsules(iterations=3)
    embeddings = tf.constant(EMBEDDINGS[:2])
    mask = tf.constant(MASK[:2])
    coefficients = tf.constant(RNG.normal(size=(2, K, DIM)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(embeddings)
        interests, routing = extractor(embeddings, mask, return_routing=True)
        loss = tf.reduce_sum(interests * coefficients)
    gradients = tape.gradient(loss, [embeddings, extractor.bilinear.kernel])
    kernel = tf.constant(extractor.bilinear.kernel.numpy())
    with tf.GradientTape() as tape:
        tape.watch([embeddings, kernel])
        mapped = tf.einsum("bld,de->ble", embeddings * tf.cast(mask, tf.float32)[..., None], kernel)
        held = tf_squash(tf.einsum("bkl,bld->bkd", tf.constant(routing.numpy()), mapped))
        expected_loss = tf.reduce_sum(held * coefficients)
    expected = tape.gradient(expected_loss, [embeddings, kernel])
    for gradient, reference in zip(gradients, expected):
        assert np.abs(reference.numpy()).sum() > 0
        np.testing.assert_allclose(gradient.numpy(), reference.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(gradients[0].numpy()[~MASK[:2]], 0.0)


# ---------------------------------------------------------------- self-attentive (ComiRec-SA)


def numpy_self_attentive(embeddings, mask, w1, b1, w2, positions=None):
    values = np.where(mask[..., None], embeddings, 0.0)
    scored = values if positions is None else values + positions[:embeddings.shape[1]]
    logits = np.transpose(np.tanh(scored @ w1 + b1) @ w2, (0, 2, 1))  # [B, K, L]
    attention = np.zeros_like(logits)
    for b in range(embeddings.shape[0]):
        if mask[b].any():
            attention[b][:, mask[b]] = numpy_softmax(logits[b][:, mask[b]], axis=-1)
    return np.einsum("bkl,bld->bkd", attention, values), attention


@pytest.mark.parametrize("use_positions", [True, False])
def test_self_attentive_interests_match_numpy(use_positions):
    extractor = SelfAttentiveInterests(K, DIM, max_length=6, hidden_factor=2, use_positions=use_positions)
    extractor(tf.constant(EMBEDDINGS), tf.constant(MASK))
    w1 = RNG.normal(size=(DIM, 2 * DIM)).astype(np.float32)
    b1 = RNG.normal(size=2 * DIM).astype(np.float32) * 0.1
    w2 = RNG.normal(size=(2 * DIM, K)).astype(np.float32)
    extractor.hidden.set_weights([w1, b1])
    extractor.heads.set_weights([w2])
    positions = None
    if use_positions:
        positions = RNG.normal(size=(6, DIM)).astype(np.float32)
        extractor.position_embedding.set_weights([positions])
    else:
        assert extractor.position_embedding is None and len(extractor.trainable_variables) == 3
    interests, attention = extractor(tf.constant(EMBEDDINGS), tf.constant(MASK), return_attention=True)
    expected_interests, expected_attention = numpy_self_attentive(EMBEDDINGS, MASK, w1, b1, w2, positions)
    np.testing.assert_allclose(attention.numpy(), expected_attention, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(interests.numpy(), expected_interests, rtol=1e-5, atol=1e-6)
    # Rows sum to 1 over the valid positions, except the empty row's, which is all zeros.
    np.testing.assert_allclose(attention.numpy().sum(axis=-1), [[1.0] * K, [1.0] * K, [0.0] * K], rtol=1e-6)
    np.testing.assert_array_equal(attention.numpy()[~np.broadcast_to(MASK[:, None, :], attention.shape)], 0.0)


def test_self_attentive_padding_changes_nothing_and_an_empty_row_gives_zeros():
    extractor = SelfAttentiveInterests(K, DIM, max_length=6, seed=2)
    clean = extractor(tf.constant(EMBEDDINGS), tf.constant(MASK)).numpy()
    for garbage in (1e6, np.nan, -np.inf):
        noisy = extractor(tf.constant(with_garbage(EMBEDDINGS, MASK, garbage)), tf.constant(MASK))
        np.testing.assert_allclose(noisy.numpy(), clean, rtol=1e-6, atol=1e-7)
    truncated = extractor(tf.constant(EMBEDDINGS[:, :4]), tf.constant(MASK[:, :4])).numpy()
    np.testing.assert_allclose(truncated, clean, rtol=1e-6, atol=1e-7)
    assert np.isfinite(clean).all()
    np.testing.assert_array_equal(clean[2], 0.0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="exceeds max_length"):
        SelfAttentiveInterests(K, DIM, max_length=4)(tf.constant(EMBEDDINGS), tf.constant(MASK))
    # Without positions there is no table to overrun.
    assert SelfAttentiveInterests(K, DIM, max_length=4, use_positions=False)(
        tf.constant(EMBEDDINGS), tf.constant(MASK)).shape == (3, K, DIM)


def test_self_attentive_in_a_tf_function_checks_the_length_before_the_position_lookup(grappler):
    extractor = SelfAttentiveInterests(K, DIM, max_length=5, seed=2)

    @tf.function(input_signature=[tf.TensorSpec([None, None, DIM]), tf.TensorSpec([None, None], tf.bool)])
    def extract(embeddings, mask):
        return extractor(embeddings, mask)

    np.testing.assert_allclose(extract(tf.constant(EMBEDDINGS), tf.constant(MASK)).numpy(),
                               extractor(tf.constant(EMBEDDINGS), tf.constant(MASK)).numpy(), rtol=1e-5, atol=1e-6)
    longer = np.concatenate([EMBEDDINGS, EMBEDDINGS[:, :1]], axis=1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="exceeds max_length"):
        extract(tf.constant(longer), tf.constant(np.concatenate([MASK, MASK[:, :1]], axis=1)))


# ---------------------------------------------------------------- both extractors


def both_extractors(seed):
    return [CapsuleInterestExtractor(K, DIM, seed=seed), SelfAttentiveInterests(K, DIM, max_length=6, seed=seed)]


def test_gradients_reach_the_inputs_and_every_trainable_variable():
    for extractor in both_extractors(seed=1):
        embeddings = tf.constant(EMBEDDINGS)
        with tf.GradientTape() as tape:
            tape.watch(embeddings)
            loss = tf.reduce_sum(extractor(embeddings, tf.constant(MASK)) * [1.0, -2.0, 0.5, 3.0])
        gradients = tape.gradient(loss, [embeddings] + extractor.trainable_variables)
        assert len(gradients) > 1
        for gradient in gradients:
            values = tf.convert_to_tensor(gradient).numpy()
            assert np.isfinite(values).all() and np.abs(values).sum() > 0
        np.testing.assert_array_equal(gradients[0].numpy()[~MASK], 0.0)


def test_same_seed_same_interests_and_config_round_trip():
    for first, second, other in zip(both_extractors(7), both_extractors(7), both_extractors(8)):
        outputs = first(tf.constant(EMBEDDINGS), tf.constant(MASK)).numpy()
        np.testing.assert_array_equal(second(tf.constant(EMBEDDINGS), tf.constant(MASK)).numpy(), outputs)
        assert np.abs(other(tf.constant(EMBEDDINGS), tf.constant(MASK)).numpy() - outputs).max() > 1e-3
        clone = type(first).from_config(first.get_config())
        assert clone.get_config() == first.get_config()
        np.testing.assert_array_equal(clone(tf.constant(EMBEDDINGS), tf.constant(MASK)).numpy(), outputs)


def test_work_in_a_tf_function_with_any_length():
    for extractor in both_extractors(seed=0):
        @tf.function(input_signature=[tf.TensorSpec([None, None, DIM]), tf.TensorSpec([None, None], tf.bool)])
        def extract(embeddings, mask):
            return extractor(embeddings, mask)

        for length in (5, 2):
            compiled = extract(tf.constant(EMBEDDINGS[:, :length]), tf.constant(MASK[:, :length]))
            eager = extractor(tf.constant(EMBEDDINGS[:, :length]), tf.constant(MASK[:, :length]))
            np.testing.assert_allclose(compiled.numpy(), eager.numpy(), rtol=1e-5, atol=1e-6)
            assert compiled.shape == (3, K, DIM)


def test_capsules_survive_a_saved_model_round_trip(tmp_path):
    extractor = CapsuleInterestExtractor(K, DIM, seed=None)
    module = tf.Module()
    module.extractor = extractor
    module.extract = tf.function(lambda embeddings, mask: extractor(embeddings, mask),
                                 input_signature=[tf.TensorSpec([None, None, DIM]),
                                                  tf.TensorSpec([None, None], tf.bool)])
    expected = module.extract(tf.constant(EMBEDDINGS), tf.constant(MASK)).numpy()
    tf.saved_model.save(module, str(tmp_path))
    restored = tf.saved_model.load(str(tmp_path))
    np.testing.assert_allclose(restored.extract(tf.constant(EMBEDDINGS), tf.constant(MASK)).numpy(), expected,
                               rtol=1e-6)


def test_extractors_under_mixed_precision():
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        for extractor in both_extractors(seed=0):
            interests = extractor(tf.constant(EMBEDDINGS), tf.constant(MASK))
            assert interests.dtype == tf.float16
            assert np.isfinite(interests.numpy()).all()
            np.testing.assert_array_equal(interests.numpy()[2], 0.0)
            assert all(variable.dtype == tf.float32 for variable in extractor.trainable_variables)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")


def test_reject_bad_arguments():
    with pytest.raises(ValueError, match="positive"):
        CapsuleInterestExtractor(0, DIM)
    with pytest.raises(ValueError, match="positive"):
        CapsuleInterestExtractor(K, DIM, iterations=0)
    with pytest.raises(ValueError, match="positive"):
        SelfAttentiveInterests(0, DIM, max_length=5)
