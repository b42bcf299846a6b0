import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.config.schema import AlphaRecConfig, ModelConfig, SemanticTowerConfig, TowerConfig
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, PAD_ITEM, USER_INDEX
from tfrs_llmrec.models.lightgcn import LightGCNModel
from tfrs_llmrec.models.alpharec import AlphaRecModel, restore_semantic_mlp

SEMANTIC_DIM = 6
# (user, item) training pairs; (0, 1) is repeated, item 7 has no training edge.
PAIRS = np.array([[0, 0], [0, 1], [0, 2], [0, 1], [1, 1], [1, 3], [2, 2], [2, 4], [2, 5], [3, 6], [4, 0], [4, 5]])
NUM_USERS, NUM_ITEMS = 5, 8


def catalogue(num_items, seed=0):
    return np.random.default_rng(seed).normal(size=(num_items, SEMANTIC_DIM)).astype(np.float32)


def user_items(users, items, num_users):
    return [sorted(set(items[users == user].tolist())) for user in range(num_users)]


def mean_user_vectors(item_vectors, users, items, num_users):
    """The mean of each user's (unique) training items' vectors."""
    return np.stack([item_vectors[row].mean(axis=0) for row in user_items(users, items, num_users)])


def config(**overrides):
    values = dict(tower=TowerConfig(dim=4), semantic=SemanticTowerConfig(hidden_dims=[5], activation="tanh"),
                  lightgcn_layers=2, temperature=0.2, num_sampled_negatives=3,
                  alpharec=AlphaRecConfig(intention_alpha=0.5))
    return ModelConfig(**{**values, **overrides})


def build(model_config=None, num_users=NUM_USERS, num_items=NUM_ITEMS, pairs=PAIRS, seed=0):
    item_vectors = catalogue(num_items, seed)
    users, items = pairs[:, 0], pairs[:, 1]
    return AlphaRecModel(item_vectors, num_users, users, items, model_config or config(), seed=seed)


def test_user_inputs_are_the_means_of_their_distinct_training_items():
    model = build()  # user 0 has item 1 twice
    expected = mean_user_vectors(catalogue(NUM_ITEMS), PAIRS[:, 0], PAIRS[:, 1], NUM_USERS)
    np.testing.assert_allclose(model.user_vectors.numpy(), expected, rtol=1e-6, atol=1e-7)


def randomize_mlp(model, seed=1):
    """Non-zero biases too, so the hand computation below checks them."""
    model.item_embeddings()  # builds the MLP
    rng = np.random.default_rng(seed)
    model.item_tower.mlp.set_weights([rng.normal(size=w.shape).astype(np.float32)
                                      for w in model.item_tower.mlp.get_weights()])


def numpy_loss(model, user_ids, positive_ids, negative_ids, temperature):
    kernel_1, bias_1, kernel_2, bias_2 = model.item_tower.mlp.get_weights()
    vectors = np.concatenate([model.user_vectors.numpy(), model.item_tower.item_vectors.numpy()])
    layer = np.tanh(vectors @ kernel_1 + bias_1) @ kernel_2 + bias_2
    edges = {(u, i) for u, i in PAIRS.tolist()}
    adjacency = np.zeros((NUM_USERS + NUM_ITEMS,) * 2)
    for u, i in edges:
        adjacency[u, NUM_USERS + i] = adjacency[NUM_USERS + i, u] = 1.0
    degree = adjacency.sum(axis=1)
    with np.errstate(divide="ignore"):
        scale = np.where(degree > 0, degree ** -0.5, 0.0)
    normalized = scale[:, None] * adjacency * scale[None, :]
    layers = [layer]
    for _ in range(2):
        layers.append(normalized @ layers[-1])
    nodes = np.mean(layers, axis=0)
    nodes /= np.linalg.norm(nodes, axis=1, keepdims=True)
    users, items = nodes[:NUM_USERS], nodes[NUM_USERS:]
    losses = []
    for row, (user, positive) in enumerate(zip(user_ids, positive_ids)):
        negatives = (negative_ids if negative_ids is not None
                     else [other for other in positive_ids if other != positive])
        logits = np.array([users[user] @ items[positive]] + [users[user] @ items[n] for n in negatives]) / temperature
        losses.append(np.log(np.exp(logits).sum()) - logits[0])
    return np.mean(losses)


@pytest.mark.parametrize("num_negatives", [3, 0])
def test_loss_matches_a_numpy_computation(num_negatives):
    model = build(config(num_sampled_negatives=num_negatives))
    randomize_mlp(model)
    batch = {USER_INDEX: tf.constant([0, 2, 4, 1], tf.int64), ITEM_INDEX: tf.constant([1, 4, 5, 3], tf.int64)}
    negative_ids = None
    if num_negatives:
        # The stateless draw compute_loss makes (seeded by model seed, call site and step).
        negative_ids = model.uniform_items(model.negatives_site, [num_negatives], NUM_ITEMS,
                                           per_replica=False).numpy()
    loss = float(model.compute_loss(batch))
    expected = numpy_loss(model, [0, 2, 4, 1], [1, 4, 5, 3], negative_ids, temperature=0.2)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_only_the_mlp_is_trainable():
    model = build()
    model.item_embeddings()
    mlp_variables = {id(variable) for variable in model.item_tower.mlp.trainable_variables}
    assert len(mlp_variables) == 4 and {id(variable) for variable in model.trainable_variables} == mlp_variables
    assert not model.user_vectors.trainable and not model.item_tower.item_vectors.trainable


def test_training_reduces_the_loss():
    model = build()
    users, items = np.tile(PAIRS[:, 0], 8), np.tile(PAIRS[:, 1], 8)
    data = tf.data.Dataset.from_tensor_slices({USER_INDEX: users, ITEM_INDEX: items}).shuffle(128, seed=0).batch(12)
    full_batch = {USER_INDEX: tf.constant(PAIRS[:, 0]), ITEM_INDEX: tf.constant(PAIRS[:, 1])}

    def loss():
        tf.random.set_seed(5)
        return float(model.compute_loss(full_batch))

    before = loss()
    vectors = model.item_tower.item_vectors.numpy().copy()
    model.compile(tf.keras.optimizers.Adam(0.05))
    model.fit(data, epochs=5, verbose=0)
    assert loss() < 0.8 * before
    np.testing.assert_array_equal(model.item_tower.item_vectors.numpy(), vectors)


def full_histories():
    """Each user's unique training items in a shuffled order, with a repeat and padding."""
    rows = user_items(PAIRS[:, 0], PAIRS[:, 1], NUM_USERS)
    history = np.full((NUM_USERS, 5), PAD_ITEM, np.int64)
    for user, row in enumerate(rows):
        row = row[::-1] + row[:1]  # reversed, then the first item again
        history[user, :len(row)] = row
    return history


@pytest.mark.parametrize("num_layers", [0, 2])
def test_fold_in_of_a_full_history_is_the_propagated_user(num_layers):
    model = build(config(lightgcn_layers=num_layers))
    randomize_mlp(model)
    history = full_histories()
    transductive = model.query_embeddings(np.arange(NUM_USERS))
    np.testing.assert_allclose(model.fold_in_queries(history).numpy(), transductive, atol=1e-5)
    serving = model.serving_query_tower()
    queries = serving({USER_INDEX: tf.zeros([NUM_USERS], tf.int64), HISTORY: tf.constant(history)})
    np.testing.assert_allclose(queries.numpy(), transductive, atol=1e-5)
    # New users: an empty history and one with an item no training user has.
    unseen = model.fold_in_queries(np.array([[PAD_ITEM] * 5, [7, 2, PAD_ITEM, PAD_ITEM, PAD_ITEM]])).numpy()
    assert np.isfinite(unseen).all()
    np.testing.assert_allclose(np.linalg.norm(unseen, axis=1), 1.0, rtol=1e-5)


def test_intention_blends_into_the_fold_in_query():
    model = build()
    randomize_mlp(model)
    history = full_histories()[:2]
    intention = catalogue(2, seed=9)
    plain = model.fold_in_queries(history).numpy()
    np.testing.assert_allclose(model.fold_in_queries(history, intention, alpha=0.0).numpy(), plain, atol=1e-6)
    blended = model.fold_in_queries(history, intention, alpha=0.7).numpy()
    assert np.abs(blended - plain).max() > 1e-2
    per_row = model.fold_in_queries(history, intention, alpha=tf.constant([0.0, 0.7])).numpy()
    np.testing.assert_allclose(per_row, [plain[0], blended[1]], atol=1e-6)
    # Without alpha, config.alpharec.intention_alpha (0.5) applies.
    np.testing.assert_allclose(model.fold_in_queries(history, intention).numpy(),
                               model.fold_in_queries(history, intention, alpha=0.5).numpy(), atol=1e-6)


def test_zero_shot_restores_only_the_mlp_from_another_catalogue(tmp_path):
    source = build(seed=3)
    source.compile(tf.keras.optimizers.Adam(0.05))
    source.fit(tf.data.Dataset.from_tensor_slices({USER_INDEX: PAIRS[:, 0], ITEM_INDEX: PAIRS[:, 1]}).batch(6),
               epochs=1, verbose=0)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=source), str(tmp_path / "source"), max_to_keep=1)
    manager.save()

    # A bigger catalogue and user base: every user takes item u and u + 4.
    target_pairs = np.array([[user, item] for user in range(7) for item in (user, user + 4)])
    target = build(num_users=7, num_items=11, pairs=target_pairs, seed=4)
    vectors = target.item_tower.item_vectors.numpy().copy()
    restore_semantic_mlp(target, tmp_path / "source")  # a directory: its latest checkpoint
    for restored, trained in zip(target.item_tower.mlp.get_weights(), source.item_tower.mlp.get_weights()):
        np.testing.assert_array_equal(restored, trained)
    np.testing.assert_array_equal(target.item_tower.item_vectors.numpy(), vectors)
    assert target.item_embeddings().shape == (11, 4)


def test_zero_shot_refuses_checkpoints_without_a_fitting_mlp(tmp_path):
    target = build()
    target.item_embeddings()
    weights = target.item_tower.mlp.get_weights()
    lightgcn = LightGCNModel(NUM_USERS, NUM_ITEMS, PAIRS[:, 0], PAIRS[:, 1], config())
    no_mlp = tf.train.Checkpoint(model=lightgcn).write(str(tmp_path / "lightgcn" / "ckpt"))
    with pytest.raises(ValueError, match="no AlphaRec semantic MLP"):
        restore_semantic_mlp(target, no_mlp)
    wider = build(config(tower=TowerConfig(dim=7)))
    wider.item_embeddings()
    other_shape = tf.train.Checkpoint(model=wider).write(str(tmp_path / "wider" / "ckpt"))
    with pytest.raises(ValueError, match="does not fit"):
        restore_semantic_mlp(target, other_shape)
    for kept, before in zip(target.item_tower.mlp.get_weights(), weights):
        np.testing.assert_array_equal(kept, before)


def test_a_new_item_is_embedded_as_a_catalogue_item_without_training_edges():
    # Item 7 has no edge: propagation gives it its layer 0 only, which is all a new item gets.
    model = build()
    randomize_mlp(model)
    isolated = catalogue(NUM_ITEMS)[7:8]
    np.testing.assert_allclose(model.text_only_item_tower()(isolated).numpy(), model.item_embeddings()[7:8],
                               rtol=1e-5, atol=1e-6)
    # An item with edges differs: its neighbours move it.
    assert not np.allclose(model.text_only_item_tower()(catalogue(NUM_ITEMS)[1:2]).numpy(),
                           model.item_embeddings()[1:2], atol=1e-3)
