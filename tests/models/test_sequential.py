"""SASRec and the multi-interest models (MIND, ComiRec-SA, REMI) on tiny synthetic sequences."""

import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.config.schema import ModelConfig
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, PAD_ITEM, USER_INDEX
from tfrs_llmrec.losses.routing_regularization import routing_regularization_loss
from tfrs_llmrec.models.registry import ModelInputs, build_model
from tfrs_llmrec.models.sequential import MultiInterestModel

NUM_ITEMS, LENGTH = 40, 6


def config_for(name, **sequence):
    config = ModelConfig(name=name)
    config.tower.dim = 16
    config.temperature = 0.1
    config.num_sampled_negatives = 8
    for key, value in sequence.items():
        setattr(config.sequence, key, value)
    return config


def build(name, seed=3, **sequence):
    inputs = ModelInputs(num_users=5, item_train_counts=np.ones(NUM_ITEMS, np.int64), seed=seed, max_history=LENGTH)
    return build_model(name, config_for(name, **sequence), inputs)


def grouped_batches(rng, batch_size=64):
    """Items 0-19 and 20-39 are two tastes; a user's history and next item come from one taste."""
    while True:
        group = rng.integers(0, 2, batch_size)
        history = rng.integers(0, 20, (batch_size, LENGTH)) + 20 * group[:, None]
        lengths = rng.integers(1, LENGTH + 1, batch_size)
        history[np.arange(LENGTH)[None, :] >= lengths[:, None]] = PAD_ITEM
        yield {USER_INDEX: tf.constant(rng.integers(0, 5, batch_size)), HISTORY: tf.constant(history),
               ITEM_INDEX: tf.constant(rng.integers(0, 20, batch_size) + 20 * group)}


@pytest.mark.parametrize("name", ["sasrec", "mind", "comirec_sa", "remi"])
def test_learns_which_taste_a_history_belongs_to(name):
    model = build(name, hard_negative_beta=1.0, routing_regularization=0.1)
    model.compile(tf.keras.optimizers.Adam(0.01))
    batches = grouped_batches(np.random.default_rng(0))
    for _ in range(60):
        model.train_step(next(batches))
    test = next(grouped_batches(np.random.default_rng(1), 200))
    queries = model.query_embeddings(test[USER_INDEX].numpy(), test[HISTORY].numpy())
    items = model.item_embeddings()
    scores = (queries @ items.T) if queries.ndim == 2 else np.einsum("bkd,nd->bkn", queries, items).max(axis=1)
    top = np.argsort(-scores, axis=1)[:, :10]
    same_taste = (top // 20) == (test[ITEM_INDEX].numpy()[:, None] // 20)
    assert same_taste.mean() > 0.9, same_taste.mean()


@pytest.mark.parametrize("name, shape", [("sasrec", (3, 16)), ("mind", (3, 4, 16)), ("comirec_sa", (3, 4, 16))])
def test_queries_come_from_the_history_alone(name, shape):
    model = build(name)
    history = np.array([[1, 2, 3, PAD_ITEM, PAD_ITEM, PAD_ITEM]] * 3)
    queries = model.query_embeddings(np.array([0, 4, -1]), history)  # known, other and unknown users
    assert queries.shape == shape
    np.testing.assert_allclose(np.linalg.norm(queries, axis=-1), 1.0, rtol=1e-5)  # cosine scoring
    np.testing.assert_allclose(queries[1], queries[0], atol=1e-6)
    np.testing.assert_allclose(queries[2], queries[0], atol=1e-6)
    other = model.query_embeddings(np.array([0]), np.array([[5, 2, 3, PAD_ITEM, PAD_ITEM, PAD_ITEM]]))
    assert np.abs(other[0] - queries[0]).max() > 1e-6


def test_argmax_readout_trains_the_interest_closest_to_the_target():
    model = build("comirec_sa", readout="argmax")
    features = next(grouped_batches(np.random.default_rng(2), 8))
    interests, _ = model.interests(features, training=False)
    target = model.embed_items(features[ITEM_INDEX])
    closest = np.argmax(np.einsum("bkd,bd->bk", interests.numpy(), target.numpy()), axis=1)
    np.testing.assert_allclose(model.read_out(interests, target).numpy(),
                               interests.numpy()[np.arange(8), closest], rtol=1e-6)


def test_remi_adds_the_weighted_routing_regulariser_and_hard_negatives():
    plain = build("remi", routing_regularization=0.0, hard_negative_beta=0.0)
    regularised = build("remi", routing_regularization=0.5, hard_negative_beta=0.0)
    features = next(grouped_batches(np.random.default_rng(3), 16))
    _, routing = regularised.interests(features, training=False)
    expected = 0.5 * float(routing_regularization_loss(routing, features[HISTORY] != PAD_ITEM, dim=16))
    difference = float(regularised.compute_loss(features)) - float(plain.compute_loss(features))
    assert expected > 0 and difference == pytest.approx(expected, rel=1e-2)  # a difference of two ~3.7 losses
    assert build("remi", hard_negative_beta=2.0).task.hardness == 2.0
    # The other backbones never take REMI's training scheme.
    mind = build("mind", hard_negative_beta=2.0, routing_regularization=0.5)
    assert mind.task.hardness == 0.0 and mind.routing_weight == 0.0


def test_unknown_backbone_is_refused():
    with pytest.raises(ValueError, match="unknown multi-interest backbone"):
        MultiInterestModel(NUM_ITEMS, LENGTH, np.ones(NUM_ITEMS), config_for("mind"), backbone="dr")


@pytest.mark.parametrize("name", ["mind", "remi"])
def test_routing_moves_away_from_its_random_start(name):
    # Behaviours enter routing L2-normalised: at the initial embedding scale (|e| ~ 0.2) the
    # agreement updates would be ~100x smaller than the N(0, 1) initial logits.
    model = build(name)
    features = next(grouped_batches(np.random.default_rng(4), 16))
    _, routing = model.interests(features, training=False)
    extractor = model.query_tower.extractor
    start = tf.nn.softmax(extractor.initial_logits(LENGTH), axis=0).numpy()[np.newaxis]
    valid = (features[HISTORY].numpy() != PAD_ITEM)[:, np.newaxis, :]
    assert np.abs(np.where(valid, routing.numpy() - start, 0.0)).max() > 0.1
