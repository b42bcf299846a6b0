import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.data.spec import HISTORY, PAD_ITEM
from tfrs_llmrec.layers.semantic_tower import SemanticHistoryQueryTower, SemanticItemTower


def catalogue(num_items=5, dim=3, seed=0):
    return np.random.default_rng(seed).normal(size=(num_items, dim)).astype(np.float32)


def linear_weights(mlp):
    kernel, bias = (weight.numpy() for weight in mlp.weights)
    return kernel, bias


def test_frozen_vectors_are_not_trained_while_the_mlp_is():
    vectors = catalogue()
    tower = SemanticItemTower(vectors, output_dim=4, hidden_dims=(6,), seed=3)
    items = tf.constant([0, 2, 4], tf.int64)
    tower(items)
    assert tower.item_vectors not in tower.trainable_variables
    assert not tower.item_vectors.trainable
    assert len(tower.trainable_variables) == 4  # two Dense layers: kernel + bias each
    before = [variable.numpy().copy() for variable in tower.trainable_variables]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tower(items) * tf.constant([1.0, -2.0, 0.5, 3.0]))
    gradients = tape.gradient(loss, tower.trainable_variables)
    tf.keras.optimizers.SGD(0.5).apply_gradients(zip(gradients, tower.trainable_variables))
    np.testing.assert_array_equal(tower.item_vectors.numpy(), vectors)
    assert any(not np.allclose(old, new.numpy()) for old, new in zip(before, tower.trainable_variables))


def test_padding_is_safe_and_leaves_other_rows_alone():
    tower = SemanticItemTower(catalogue(), output_dim=4, seed=1)
    padded = tower(tf.constant([[3, PAD_ITEM], [PAD_ITEM, PAD_ITEM]], tf.int64)).numpy()
    assert padded.shape == (2, 2, 4)
    assert np.isfinite(padded).all()
    np.testing.assert_allclose(padded[0, 0], tower(tf.constant([3], tf.int64)).numpy()[0], rtol=1e-6)


def test_project_matches_call_and_outputs_are_normalised():
    vectors = catalogue()
    tower = SemanticItemTower(vectors, output_dim=4, hidden_dims=(8,), activation="leaky_relu", seed=2)
    by_index = tower(tf.range(5)).numpy()
    np.testing.assert_allclose(tower.project(vectors).numpy(), by_index, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tower.catalogue_embeddings().numpy(), by_index, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(by_index, axis=1), np.ones(5), rtol=1e-5)


def test_leaky_relu_mlp_matches_a_hand_computation():
    vectors = catalogue()
    tower = SemanticItemTower(vectors, output_dim=2, hidden_dims=(4,), activation="leaky_relu",
                              l2_normalize=False, seed=4)
    outputs = tower(tf.range(5)).numpy()
    kernel_1, bias_1, kernel_2, bias_2 = (weight.numpy() for weight in tower.mlp.weights)
    hidden = vectors @ kernel_1 + bias_1
    hidden = np.where(hidden > 0, hidden, 0.2 * hidden)
    np.testing.assert_allclose(outputs, hidden @ kernel_2 + bias_2, rtol=1e-5, atol=1e-6)


def test_rejects_a_bad_catalogue():
    with pytest.raises(ValueError, match="non-empty"):
        SemanticItemTower(np.zeros([3], np.float32), output_dim=2)
    with pytest.raises(ValueError, match="non-empty"):
        SemanticItemTower(np.zeros([0, 4], np.float32), output_dim=2)


def test_config_round_trip_keeps_the_shape_not_the_vectors():
    tower = SemanticItemTower(catalogue(), output_dim=4, hidden_dims=(6,), activation="leaky_relu", seed=5)
    clone = SemanticItemTower.from_config(tower.get_config())
    assert clone.get_config() == tower.get_config()
    assert clone.item_vectors.shape == (5, 3)
    query = SemanticHistoryQueryTower(tower, l2_normalize=False, intention_alpha=0.3)
    query_clone = SemanticHistoryQueryTower.from_config(query.get_config())
    assert query_clone.get_config() == query.get_config()


def test_query_is_the_projection_of_the_unpadded_history_mean():
    vectors = catalogue()
    items = SemanticItemTower(vectors, output_dim=4, l2_normalize=False, seed=6)
    query = SemanticHistoryQueryTower(items, l2_normalize=False)
    history = tf.constant([[2, 4, PAD_ITEM, PAD_ITEM], [1, PAD_ITEM, PAD_ITEM, PAD_ITEM]], tf.int64)
    outputs = query({HISTORY: history}).numpy()
    kernel, bias = linear_weights(items.mlp)
    means = np.stack([(vectors[2] + vectors[4]) / 2.0, vectors[1]])
    np.testing.assert_allclose(outputs, means @ kernel + bias, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(query(history).numpy(), outputs, rtol=1e-6)  # the bare tensor works too

    normalised = SemanticHistoryQueryTower(items)({HISTORY: history}).numpy()
    expected = means @ kernel + bias
    np.testing.assert_allclose(normalised, expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-5)


def test_empty_history_gives_no_nan():
    query = SemanticHistoryQueryTower(SemanticItemTower(catalogue(), output_dim=4, seed=7))
    outputs = query({HISTORY: tf.constant([[PAD_ITEM, PAD_ITEM]], tf.int64)}).numpy()
    assert np.isfinite(outputs).all()


def test_intention_blending_interpolates_in_the_semantic_space():
    vectors = catalogue()
    items = SemanticItemTower(vectors, output_dim=4, hidden_dims=(5,), activation="leaky_relu", seed=8)
    query = SemanticHistoryQueryTower(items)
    features = {HISTORY: tf.constant([[0, 3, PAD_ITEM], [2, PAD_ITEM, PAD_ITEM]], tf.int64)}
    intention = np.random.default_rng(9).normal(size=(2, 3)).astype(np.float32)

    plain = query(features).numpy()
    np.testing.assert_allclose(query(features, intention_vectors=intention, alpha=0.0).numpy(), plain, rtol=1e-6)
    np.testing.assert_allclose(query(features, intention_vectors=intention, alpha=1.0).numpy(),
                               items.project(intention).numpy(), rtol=1e-5, atol=1e-6)

    means = np.stack([(vectors[0] + vectors[3]) / 2.0, vectors[2]])
    alphas = np.array([0.25, 0.75], np.float32)
    blended = (1.0 - alphas[:, None]) * means + alphas[:, None] * intention
    np.testing.assert_allclose(query(features, intention_vectors=intention, alpha=alphas).numpy(),
                               items.project(blended).numpy(), rtol=1e-5, atol=1e-6)

    default_alpha = SemanticHistoryQueryTower(items, intention_alpha=0.25)
    np.testing.assert_allclose(default_alpha(features, intention_vectors=intention).numpy()[0],
                               items.project(blended).numpy()[0], rtol=1e-5, atol=1e-6)


def test_saved_model_round_trip_keeps_the_frozen_vectors(tmp_path):
    vectors = catalogue()
    items = SemanticItemTower(vectors, output_dim=4, hidden_dims=(6,), activation="leaky_relu", seed=10)
    query = SemanticHistoryQueryTower(items)

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.items = items
            self.query = query

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
        def embed_items(self, item_indices):
            return self.items(item_indices)

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64)])
        def embed_queries(self, history):
            return self.query({HISTORY: history})

    module = Serving()
    item_indices = tf.constant([4, 0, PAD_ITEM], tf.int64)
    history = tf.constant([[1, 2, PAD_ITEM]], tf.int64)
    expected_items = module.embed_items(item_indices).numpy()
    expected_queries = module.embed_queries(history).numpy()
    tf.saved_model.save(module, str(tmp_path / "tower"))

    loaded = tf.saved_model.load(str(tmp_path / "tower"))
    frozen = [variable for variable in loaded.items.variables if variable.shape == (5, 3)]
    assert len(frozen) == 1 and not frozen[0].trainable
    np.testing.assert_array_equal(frozen[0].numpy(), vectors)
    np.testing.assert_allclose(loaded.embed_items(item_indices).numpy(), expected_items, rtol=1e-6)
    np.testing.assert_allclose(loaded.embed_queries(history).numpy(), expected_queries, rtol=1e-6)
