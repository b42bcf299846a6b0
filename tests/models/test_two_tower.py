import numpy as np
import tensorflow as tf

from tfrs_llmrec.config.schema import ModelConfig, TowerConfig
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, PAD_ITEM, USER_INDEX
from tfrs_llmrec.models import TwoTowerModel


def toy_dataset():
    # User u always consumes item (2u) or (2u + 1): a learnable pattern.
    rng = np.random.default_rng(0)
    users = rng.integers(0, 8, size=512)
    items = 2 * users + rng.integers(0, 2, size=512)
    history = np.full((512, 3), PAD_ITEM)
    return tf.data.Dataset.from_tensor_slices({USER_INDEX: users, ITEM_INDEX: items, HISTORY: history}).batch(64)


def test_training_learns_user_item_pattern():
    tf.keras.utils.set_random_seed(3)
    config = ModelConfig(tower=TowerConfig(dim=16), temperature=0.1, num_sampled_negatives=8)
    model = TwoTowerModel(num_users=8, num_items=16, item_train_counts=np.full(16, 32), config=config)
    model.compile(tf.keras.optimizers.Adam(0.05))
    history = model.fit(toy_dataset(), epochs=8, verbose=0).history["loss"]
    assert history[-1] < 0.9 * history[0]
    users = np.arange(8)
    scores = model.query_embeddings(users, np.full((8, 3), PAD_ITEM)) @ model.item_embeddings().T
    top2 = np.sort(np.argsort(-scores, axis=1)[:, :2], axis=1)
    np.testing.assert_array_equal(top2, np.stack([2 * users, 2 * users + 1], axis=1))


def test_item_embeddings_match_the_tower():
    model = TwoTowerModel(3, 10, np.ones(10), ModelConfig(tower=TowerConfig(dim=4)))
    np.testing.assert_allclose(model.item_embeddings(), model.item_tower(tf.range(10, dtype=tf.int64)).numpy(),
                               rtol=1e-6)
