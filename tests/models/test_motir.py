import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.config.schema import ModelConfig, MotirConfig, SemanticTowerConfig, TowerConfig
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, PAD_ITEM, USER_INDEX
from tfrs_llmrec.losses import cosine_alignment_loss
from tfrs_llmrec.models.motir import STAGES, MotiRModel

NUM_USERS, NUM_ITEMS, DIM, SEMANTIC_DIM = 6, 12, 8, 5


def make_model(gate="scalar", seed=1):
    tf.keras.utils.set_random_seed(seed)
    config = ModelConfig(name="motir", tower=TowerConfig(dim=DIM, use_user_id=True), num_sampled_negatives=4,
                         semantic=SemanticTowerConfig(hidden_dims=[16]), motir=MotirConfig(gate=gate))
    vectors = np.random.default_rng(seed).normal(size=(NUM_ITEMS, SEMANTIC_DIM)).astype(np.float32)
    return MotiRModel(NUM_USERS, vectors, np.arange(1, NUM_ITEMS + 1), config, seed=seed)


def batch(size=16, seed=0):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, NUM_USERS, size)
    return {USER_INDEX: tf.constant(users, tf.int64), ITEM_INDEX: tf.constant(2 * users, tf.int64),
            HISTORY: tf.constant(np.where(rng.random((size, 3)) < 0.5, PAD_ITEM, rng.integers(0, NUM_ITEMS, (size, 3))),
                                 tf.int64)}


def refs(variables):
    return {variable.ref() for variable in variables}


@pytest.mark.parametrize("gate", ["scalar", "two_weight"])
def test_each_stage_trains_exactly_its_parts(gate):
    model = make_model(gate)
    model.compute_loss(batch())
    model.fused_items(tf.range(3, dtype=tf.int64))  # builds the gate
    id_towers = refs(model.item_tower.weights) | refs(model.query_tower.weights)
    semantic_mlp = refs(model.semantic_tower.mlp.weights)
    gate_weights = refs(model.gate.weights)
    assert id_towers and semantic_mlp and gate_weights
    expected = {"id": id_towers, "align": semantic_mlp, "joint": id_towers | semantic_mlp | gate_weights}
    for stage in STAGES:
        model.set_stage(stage)
        assert refs(model.trainable_variables) == expected[stage], stage
        # The language-model vectors never train.
        assert model.semantic_tower.item_vectors.ref() not in refs(model.trainable_variables)


def test_alignment_loss_uses_each_batch_item_once():
    model = make_model()
    model.set_stage("align")
    features = batch()
    items = np.unique(features[ITEM_INDEX].numpy())
    expected = cosine_alignment_loss(model.semantic_tower(items), model.item_tower(items), temperature=0.1)
    np.testing.assert_allclose(model.compute_loss(features).numpy(), expected.numpy(), rtol=1e-6)


def test_alignment_gradient_never_reaches_the_id_towers():
    model = make_model()
    model.set_stage("align")
    with tf.GradientTape() as tape:
        loss = model.compute_loss(batch())
    variables = [model.item_tower.embedding.embeddings] + model.semantic_tower.mlp.weights
    gradients = tape.gradient(loss, variables)
    assert gradients[0] is None  # item-ID embedding: frozen and behind stop_gradient
    assert all(gradient is not None for gradient in gradients[1:])


def test_stage_representations_and_gate_weights():
    model = make_model("two_weight")
    items = np.arange(NUM_ITEMS)
    model.set_stage("id")
    np.testing.assert_allclose(model.item_embeddings(), model.item_tower(items).numpy(), rtol=1e-6)
    model.set_stage("align")
    np.testing.assert_allclose(model.item_embeddings(), model.semantic_tower(items).numpy(), rtol=1e-6)
    model.set_stage("joint")
    fused = model.item_embeddings()
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, rtol=1e-5)
    weights = model.semantic_weights()
    assert weights.shape == (NUM_ITEMS,) and np.all((weights >= 0) & (weights <= 1))
    cosines = model.alignment_cosines()
    manual = np.sum(model.semantic_tower(items).numpy() * model.item_tower(items).numpy(), axis=1)
    np.testing.assert_allclose(cosines, manual, rtol=1e-5, atol=1e-6)


def test_unknown_stage_and_misaligned_vectors_are_rejected():
    model = make_model()
    with pytest.raises(ValueError, match="unknown MotiR stage"):
        model.set_stage("stage4")
    with pytest.raises(ValueError, match="rows for"):
        MotiRModel(NUM_USERS, np.zeros((3, SEMANTIC_DIM), np.float32), np.ones(NUM_ITEMS), ModelConfig(name="motir"))


def test_a_new_item_follows_the_stage_semantic_side():
    model = make_model("scalar")
    vectors = np.random.default_rng(1).normal(size=(NUM_ITEMS, SEMANTIC_DIM)).astype(np.float32)[:4]
    items = tf.range(4, dtype=tf.int64)
    assert model.text_only_item_tower() is None  # stage "id": nothing but IDs
    for stage in ("align", "joint"):
        model.set_stage(stage)
        model.fused_items(items)  # builds the gate
        # Scalar gate over a zero ID embedding: alpha * h_sem, normalised, is h_sem itself.
        np.testing.assert_allclose(model.text_only_item_tower()(vectors).numpy(), model.semantic_tower(items).numpy(),
                                   rtol=1e-5, atol=1e-6)

