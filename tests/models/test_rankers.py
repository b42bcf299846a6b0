"""The DIN family of CTR rankers: each learns a rule a click depends on, the multi-task head adds
the rating task, and the same seed gives the same model."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from tests.models.ctr_fixtures import ctr_inputs, impressions
from tfrs_llmrec.config.schema import ModelConfig, RankingConfig
from tfrs_llmrec.data import ctr_spec
from tfrs_llmrec.data.spec import LABEL
from tfrs_llmrec.models import build_ranker


def config(**ranking):
    values = dict(embedding_dim=8, mlp_units=[32, 16], attention_units=[16], rating_loss_weight=0.5)
    return ModelConfig(ranking=RankingConfig(**{**values, **ranking}))


def train(model, steps=150, batch_size=128):
    model.compile(tf.keras.optimizers.Adam(0.01))
    for step in range(steps):
        model.train_step(impressions(batch_size, seed=1000 + step))


@pytest.mark.parametrize("name", ["mlp_ranker", "din", "din_mmoe"])
def test_each_ranker_learns_which_items_a_user_clicks(name):
    model = build_ranker(name, config(), ctr_inputs(), seed=3)
    held_out = impressions(2000, seed=1)
    before = roc_auc_score(held_out[LABEL].numpy(), model.predict_logits(held_out).numpy())
    train(model)
    after = roc_auc_score(held_out[LABEL].numpy(), model.predict_logits(held_out).numpy())
    assert after > 0.9 and after > before + 0.2, (before, after)


def test_mmoe_on_rated_sources_adds_the_rating_task():
    features = impressions(64, seed=2)
    rated = build_ranker("din_mmoe", config(), ctr_inputs(has_ratings=True), seed=3)
    outputs = rated.task_outputs(features)
    assert set(outputs) == {"click", ctr_spec.RATING}
    logits, ratings = outputs["click"].numpy(), outputs[ctr_spec.RATING].numpy()
    labels, targets = features[LABEL].numpy(), features[ctr_spec.RATING].numpy()
    probabilities = 1.0 / (1.0 + np.exp(-logits))
    bce = -np.mean(labels * np.log(probabilities) + (1 - labels) * np.log(1 - probabilities))
    expected = bce + 0.5 * np.mean((ratings - targets) ** 2)
    # The embedding L2 term is tiny but part of the loss: leave it out of the comparison.
    rated.embedding_l2 = 0.0
    np.testing.assert_allclose(rated.compute_loss(features).numpy(), expected, rtol=1e-5)
    implicit = build_ranker("din_mmoe", config(), ctr_inputs(has_ratings=False), seed=3)
    assert set(implicit.task_outputs(features)) == {"click"}


def test_the_same_seed_builds_the_same_ranker():
    features = impressions(32, seed=4)
    first = build_ranker("din", config(), ctr_inputs(), seed=5).predict_logits(features).numpy()
    again = build_ranker("din", config(), ctr_inputs(), seed=5).predict_logits(features).numpy()
    other = build_ranker("din", config(), ctr_inputs(), seed=6).predict_logits(features).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


@pytest.mark.parametrize("name", ["din", "akt_rec"])
def test_unknown_ids_score_through_a_learned_default(name):
    from tfrs_llmrec.data.spec import ITEM_INDEX, USER_INDEX

    def default_rows(model):
        tables = ([model.item_ids.individual_embedding, model.user_ids.individual_embedding] if name == "akt_rec"
                  else [model.item_ids, model.user_ids])
        return [table.embeddings.numpy()[-1].copy() for table in tables]

    learned = {}
    for rate in (0.0, 0.2):
        model = build_ranker(name, config(unknown_id_rate=rate), ctr_inputs(), seed=3)
        features = impressions(16, seed=8)
        model.compute_loss(features)
        before = default_rows(model)
        train(model, steps=30)
        learned[rate] = [not np.allclose(old, new) for old, new in zip(before, default_rows(model))]
        unknown = {**features, USER_INDEX: -tf.ones_like(features[USER_INDEX]),
                   ITEM_INDEX: -tf.ones_like(features[ITEM_INDEX])}
        default = {**features, USER_INDEX: tf.fill(tf.shape(features[USER_INDEX]), tf.constant(40, tf.int64)),
                   ITEM_INDEX: tf.fill(tf.shape(features[ITEM_INDEX]), tf.constant(60, tf.int64))}
        np.testing.assert_array_equal(model.predict_logits(unknown).numpy(), model.predict_logits(default).numpy())
    # Only replacing IDs in training trains the default rows.
    assert learned == {0.0: [False, False], 0.2: [True, True]}
