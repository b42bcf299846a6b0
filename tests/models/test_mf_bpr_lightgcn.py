import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.config.schema import ModelConfig, TowerConfig
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, PAD_ITEM, USER_INDEX
from tfrs_llmrec.models import LightGCNModel, MatrixFactorizationModel, ModelInputs, build_model

NUM_USERS, NUM_ITEMS = 8, 16


def pairs():
    # User u consumes items 2u and 2u + 1.
    users = np.repeat(np.arange(NUM_USERS), 2)
    items = np.stack([2 * np.arange(NUM_USERS), 2 * np.arange(NUM_USERS) + 1], axis=1).ravel()
    return users.astype(np.int64), items.astype(np.int64)


def dataset():
    users, items = pairs()
    users, items = np.tile(users, 16), np.tile(items, 16)
    return tf.data.Dataset.from_tensor_slices(
        {USER_INDEX: users, ITEM_INDEX: items, HISTORY: np.full((len(users), 2), PAD_ITEM)}).shuffle(256, seed=0).batch(32)


def top2(model):
    scores = model.query_embeddings(np.arange(NUM_USERS)) @ model.item_embeddings().T
    return np.sort(np.argsort(-scores, axis=1)[:, :2], axis=1)


@pytest.mark.parametrize("name", ["mf_bpr", "lightgcn"])
def test_bpr_models_learn_each_users_items(name):
    tf.keras.utils.set_random_seed(0)
    config = ModelConfig(tower=TowerConfig(dim=8), l2_weight=0.0, lightgcn_layers=1)
    model = build_model(name, config, ModelInputs(NUM_USERS, np.full(NUM_ITEMS, 2), train_pairs=pairs()))
    model.compile(tf.keras.optimizers.Adam(0.05))
    losses = model.fit(dataset(), epochs=15, verbose=0).history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    np.testing.assert_array_equal(top2(model), np.stack([2 * np.arange(NUM_USERS), 2 * np.arange(NUM_USERS) + 1], 1))


def test_lightgcn_with_zero_layers_scores_like_its_raw_embeddings():
    config = ModelConfig(tower=TowerConfig(dim=4), lightgcn_layers=0)
    model = LightGCNModel(NUM_USERS, NUM_ITEMS, *pairs(), config)
    raw = model.embeddings.numpy()
    np.testing.assert_allclose(model.item_embeddings(), raw[NUM_USERS:], rtol=1e-6)
    np.testing.assert_allclose(model.query_embeddings(np.array([3])), raw[3:4], rtol=1e-6)


def test_lightgcn_needs_the_training_graph():
    with pytest.raises(ValueError, match="train_pairs"):
        build_model("lightgcn", ModelConfig(), ModelInputs(NUM_USERS, np.ones(NUM_ITEMS)))


def test_mf_query_and_item_tables_have_the_configured_width():
    model = MatrixFactorizationModel(NUM_USERS, NUM_ITEMS, *pairs(), ModelConfig(tower=TowerConfig(dim=5)))
    assert model.item_embeddings().shape == (NUM_ITEMS, 5)
    assert model.query_embeddings(np.array([0, 7])).shape == (2, 5)


def test_mf_tables_are_drawn_independently_and_reproducibly_from_the_seed():
    config = ModelConfig(tower=TowerConfig(dim=4))
    model = MatrixFactorizationModel(NUM_ITEMS, NUM_ITEMS, *pairs(), config, seed=3)
    users, items = model.query_embeddings(np.arange(NUM_ITEMS)), model.item_embeddings()
    assert not np.allclose(users, items)  # equal shapes, yet different draws
    again = MatrixFactorizationModel(NUM_ITEMS, NUM_ITEMS, *pairs(), config, seed=3)
    np.testing.assert_array_equal(again.item_embeddings(), items)
    other = MatrixFactorizationModel(NUM_ITEMS, NUM_ITEMS, *pairs(), config, seed=4)
    assert not np.allclose(other.item_embeddings(), items)


@pytest.mark.parametrize("name", ["mf_bpr", "lightgcn"])
@pytest.mark.parametrize("exclude", [True, False])
def test_bpr_negatives_avoid_the_users_training_items(name, exclude):
    # User u holds 14 of the 16 items: a uniform draw is a training item 7 times in 8.
    users = np.repeat(np.arange(NUM_USERS), NUM_ITEMS - 2)
    items = np.concatenate([np.delete(np.arange(NUM_ITEMS), [u, u + 8]) for u in range(NUM_USERS)])
    config = ModelConfig(tower=TowerConfig(dim=4), negatives_exclude_train_items=exclude)
    model = build_model(name, config, ModelInputs(NUM_USERS, np.full(NUM_ITEMS, 2), train_pairs=(users, items), seed=0))
    batch_users = tf.constant(np.tile(np.arange(NUM_USERS), 256), tf.int64)
    negatives = model.uniform_negatives(model.negatives_site, batch_users, NUM_ITEMS, model.positives).numpy()
    is_positive = np.array([negative not in (user, user + 8) for user, negative in zip(batch_users.numpy(), negatives)])
    if exclude:
        # 8 redraws leave (7/8) ** 9 = 30% of such draws in place, against 87.5% with none.
        assert is_positive.mean() < 0.4
        unseen = negatives[~is_positive]
        assert set(np.unique(unseen)) == set(range(NUM_ITEMS))  # both unseen items of every user come up
        again = model.uniform_negatives(model.negatives_site, batch_users, NUM_ITEMS, model.positives).numpy()
        np.testing.assert_array_equal(again, negatives)  # stateless: a resumed step draws the same
    else:
        assert model.positives is None and is_positive.mean() > 0.8


@pytest.mark.parametrize("kind", ["normal", "glorot"])
def test_embedding_tables_start_at_the_configured_scale(kind):
    no_pairs = np.zeros(0, np.int64)
    config = ModelConfig(tower=TowerConfig(dim=16), embedding_init=kind)
    model = MatrixFactorizationModel(4000, 500, no_pairs, no_pairs, config, seed=0)
    users, items = model.query_embeddings(np.arange(4000)), model.item_embeddings()
    lightgcn = LightGCNModel(4000, 500, no_pairs, no_pairs, config, seed=0).embeddings.numpy()
    # glorot: the spread of N(0, 2 / (rows + dim)) (Keras truncates at two of its scaled deviations)
    expected = (0.1, 0.1, 0.1) if kind == "normal" else (
        (2 / (4000 + 16)) ** 0.5, (2 / (500 + 16)) ** 0.5, (2 / (4500 + 16)) ** 0.5)
    for table, std in zip((users, items, lightgcn), expected):
        assert table.std() == pytest.approx(std, rel=0.05)
