import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.data.spec import HISTORY, PAD_ITEM, USER_INDEX
from tfrs_llmrec.layers import HistoryQueryTower, IdItemTower, MaskedMeanPooling, MLP


def test_masked_mean_pooling_ignores_padding_and_handles_empty():
    embeddings = tf.constant([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 5.0], [7.0, 7.0], [9.0, 9.0]]])
    mask = tf.constant([[True, True, False], [False, False, False]])
    np.testing.assert_allclose(MaskedMeanPooling()(embeddings, mask).numpy(), [[2.0, 3.0], [0.0, 0.0]])


def test_mlp_shapes():
    assert MLP([8, 4], 3)(tf.zeros([5, 7])).shape == (5, 3)
    assert MLP([], 3)(tf.zeros([5, 7])).shape == (5, 3)


def test_item_tower_normalises_and_padding_is_safe():
    tower = IdItemTower(num_items=4, dim=6)
    outputs = tower(tf.constant([0, 3], tf.int64)).numpy()
    np.testing.assert_allclose(np.linalg.norm(outputs, axis=1), [1.0, 1.0], rtol=1e-5)
    assert tower.embed_ids(tf.constant([PAD_ITEM], tf.int64)).shape == (1, 6)


def test_query_tower_history_only_depends_on_unpadded_items():
    tf.random.set_seed(1)
    items = IdItemTower(num_items=5, dim=4)
    query = HistoryQueryTower(items, num_users=3, dim=4, use_user_id=False, l2_normalize=False)
    padded = query({USER_INDEX: tf.constant([0], tf.int64), HISTORY: tf.constant([[2, 1, PAD_ITEM]], tf.int64)})
    other_user = query({USER_INDEX: tf.constant([2], tf.int64), HISTORY: tf.constant([[1, 2, PAD_ITEM]], tf.int64)})
    np.testing.assert_allclose(padded.numpy(), other_user.numpy(), rtol=1e-6)  # order and user ignored


def test_query_tower_uses_user_id_when_enabled():
    tf.random.set_seed(1)
    query = HistoryQueryTower(IdItemTower(5, 4), num_users=3, dim=4)
    history = tf.constant([[1, PAD_ITEM], [1, PAD_ITEM]], tf.int64)
    outputs = query({USER_INDEX: tf.constant([0, 1], tf.int64), HISTORY: history}).numpy()
    assert not np.allclose(outputs[0], outputs[1])
    assert np.linalg.norm(outputs, axis=1) == pytest.approx([1.0, 1.0], rel=1e-5)


def test_seeded_mlp_ignores_the_global_random_state():
    tf.random.set_seed(1)
    first = MLP([4], 2, seed=7)
    first(tf.zeros([1, 3]))
    tf.random.set_seed(2)
    second = MLP([4], 2, seed=7)
    second(tf.zeros([1, 3]))
    for a, b in zip(first.weights, second.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
