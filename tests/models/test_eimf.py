"""EIMF: the explicit-interest tasks wired onto a backbone, and the LLM-free query tower."""

import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.config.schema import ModelConfig
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, PAD_ITEM, USER_INDEX
from tfrs_llmrec.models.registry import ModelInputs, build_model

NUM_ITEMS, NUM_USERS, LENGTH, SEMANTIC_DIM, MAX_INTERESTS = 30, 6, 5, 8, 3
RNG = np.random.default_rng(0)
ITEM_VECTORS = RNG.normal(size=(NUM_ITEMS, SEMANTIC_DIM)).astype(np.float32)
# Users 0-2 share one exemplar's 2 interests, users 3-4 another's 3; user 5 has none.
SETS = RNG.normal(size=(2, MAX_INTERESTS, SEMANTIC_DIM)).astype(np.float32)
SETS[0, 2] = 0.0
INTERESTS = np.stack([SETS[0]] * 3 + [SETS[1]] * 2 + [np.zeros((MAX_INTERESTS, SEMANTIC_DIM), np.float32)])
COUNTS = np.array([2, 2, 2, 3, 3, 0])


def config_for(name, backbone="comirec_sa", **eimf):
    config = ModelConfig(name=name)
    config.tower.dim = 16
    config.temperature = 1.0
    config.num_sampled_negatives = 4
    config.eimf.backbone = backbone
    for key, value in eimf.items():
        setattr(config.eimf, key, value)
    return config


def build(name, backbone="comirec_sa", **eimf):
    inputs = ModelInputs(num_users=NUM_USERS, item_train_counts=np.ones(NUM_ITEMS, np.int64), seed=5,
                         max_history=LENGTH, item_vectors=ITEM_VECTORS, user_interests=(INTERESTS, COUNTS))
    return build_model(name, config_for(name, backbone, **eimf), inputs)


def batch(users):
    rng = np.random.default_rng(1)
    history = rng.integers(0, NUM_ITEMS, (len(users), LENGTH))
    history[:, 3:] = PAD_ITEM
    return {USER_INDEX: tf.constant(users, tf.int64), HISTORY: tf.constant(history),
            ITEM_INDEX: tf.constant(rng.integers(0, NUM_ITEMS, len(users)))}


@pytest.mark.parametrize("backbone", ["mind", "comirec_sa"])
def test_without_auxiliary_tasks_eimf_is_its_backbone(backbone):
    # gamma = 0 and the backbone's own readout: the same seed gives the backbone's exact loss and queries.
    eimf = build("eimf", backbone, gamma=0.0, use_target_attention=False)
    plain = build(backbone)
    features = batch([0, 1, 3, 5])
    assert float(eimf.compute_loss(features)) == pytest.approx(float(plain.compute_loss(features)), rel=1e-6)
    np.testing.assert_array_equal(eimf.query_embeddings(np.arange(4), features[HISTORY].numpy()),
                                  plain.query_embeddings(np.arange(4), features[HISTORY].numpy()))


def test_users_of_one_cluster_share_one_interest_set_with_its_count():
    model = build("eimf")
    assert int(model.interest_sets.shape[0]) == 3  # two exemplars' sets and the empty one
    sets = model.user_interest_set.numpy()
    assert sets[0] == sets[1] == sets[2] != sets[3] == sets[4] != sets[5]
    np.testing.assert_array_equal(model.interest_counts.numpy()[sets], COUNTS)
    np.testing.assert_array_equal(model.interest_sets.numpy()[sets], INTERESTS)


def test_each_auxiliary_task_adds_gamma_times_its_loss():
    features = batch([0, 3, 4, 1])
    full = float(build("eimf", gamma=0.5).compute_loss(features))
    without_prediction = float(build("eimf", gamma=0.5, use_prediction=False).compute_loss(features))
    without_alignment = float(build("eimf", gamma=0.5, use_alignment=False).compute_loss(features))
    backbone_only = float(build("eimf", gamma=0.0).compute_loss(features))
    prediction, alignment = full - without_prediction, full - without_alignment
    assert prediction > 0 and alignment > 0
    assert backbone_only + prediction + alignment == pytest.approx(full, rel=1e-5)


def test_users_without_explicit_interests_add_no_semantic_prediction():
    only_prediction = dict(gamma=1.0, use_alignment=False)
    features = batch([5, 5, 5])
    assert float(build("eimf", **only_prediction).compute_loss(features)) == pytest.approx(
        float(build("eimf", gamma=0.0).compute_loss(features)), rel=1e-6)


def test_auxiliary_tasks_train_the_text_side_and_the_backbone():
    model = build("eimf", gamma=1.0)
    model.compile(tf.keras.optimizers.Adam(0.01))
    features = batch([0, 1, 3, 4])
    model.train_step(features)
    before = {v.name: v.numpy().copy() for v in model.trainable_variables}
    model.train_step(features)
    changed = {name for name, value in before.items()
               if not np.array_equal(value, next(v for v in model.trainable_variables if v.name == name).numpy())}
    assert any("text_projection" in name for name in changed)
    assert any("item_id_embedding" in name for name in changed)


def test_serving_tower_reads_only_the_id_history():
    model = build("eimf")
    tower = model.serving_query_tower()
    features = batch([0, 5])
    interests = tower({USER_INDEX: tf.constant([-1, -1], tf.int64), HISTORY: features[HISTORY]})
    assert tuple(interests.shape) == (2, 4, 16)
    np.testing.assert_array_equal(interests.numpy(), model.query_embeddings(np.array([0, 5]),
                                                                            features[HISTORY].numpy()))
    assert not any("text" in v.name for v in tower.trainable_variables)
