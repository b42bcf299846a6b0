"""The ranker's scoring SavedModel: raw IDs in, the probabilities the model gives for the same
impressions out, unknown IDs through the learned defaults, one clear error for a bad candidate list,
core TensorFlow ops only; reloaded in a fresh process."""

import numpy as np
import pytest
import tensorflow as tf

from tests.models.ctr_fixtures import MAX_GENRES, NUM_ITEMS, NUM_USERS, ctr_inputs
from tests.serving.test_export import ops_unknown_to_core_tensorflow
from tfrs_llmrec.config.schema import ModelConfig, RankingConfig
from tfrs_llmrec.data import ctr_spec
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, PAD_ITEM, USER_INDEX
from tfrs_llmrec.models import build_ranker
from tfrs_llmrec.serving.export import check_in_fresh_process
from tfrs_llmrec.serving.ranking_export import ImpressionTables, save_ranking_model

ITEM_IDS = [f"item-{index}" for index in range(NUM_ITEMS)]
USER_IDS = [f"user-{index}" for index in range(NUM_USERS)]
MAX_HISTORY = 6
CLUSTERS = 4


def hand_tables():
    rng = np.random.default_rng(0)
    user_attributes = np.stack([np.arange(NUM_USERS) % 8, np.arange(NUM_USERS) % 3, np.arange(NUM_USERS) % 22], 1)
    item_genres = rng.integers(0, 5, (NUM_ITEMS, MAX_GENRES))
    item_year, item_cluster = np.arange(NUM_ITEMS) % 4, np.arange(NUM_ITEMS) % CLUSTERS
    user_activity, item_activity = np.arange(NUM_USERS) % 6, (np.arange(NUM_ITEMS) * 7) % 6
    # User 3 had 5 training impressions in cluster 2 (bucket 3), user 0 one in cluster 1 (bucket 1).
    cross_keys, cross_buckets = np.array([3 * CLUSTERS + 2, 0 * CLUSTERS + 1]), np.array([3, 1])
    arrays = dict(user_attributes=user_attributes, item_genres=item_genres, item_year=item_year,
                  item_cluster=item_cluster, user_activity=user_activity, item_activity=item_activity)
    tables = ImpressionTables(**arrays, cross_keys=cross_keys, cross_buckets=cross_buckets, num_clusters=CLUSTERS)
    return tables, arrays


def impression(arrays, user, item, history, cross):
    """One impression's features as the CTR samples would carry it (-1: unknown, zeros)."""
    known_user, known_item = user >= 0, item >= 0
    return {USER_INDEX: user, ITEM_INDEX: item, HISTORY: history,
            ctr_spec.USER_ATTRIBUTES: arrays["user_attributes"][user] if known_user else np.zeros(3, np.int64),
            ctr_spec.ITEM_GENRES: arrays["item_genres"][item] if known_item else np.zeros(MAX_GENRES, np.int64),
            ctr_spec.ITEM_YEAR: arrays["item_year"][item] if known_item else 0,
            ctr_spec.ITEM_CLUSTER: arrays["item_cluster"][item] if known_item else 0,
            ctr_spec.USER_ACTIVITY: arrays["user_activity"][user] if known_user else 0,
            ctr_spec.ITEM_ACTIVITY: arrays["item_activity"][item] if known_item else 0,
            ctr_spec.CROSS_ACTIVITY: cross}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = build_ranker("din", ModelConfig(ranking=RankingConfig(embedding_dim=8, mlp_units=[16],
                                                                  attention_units=[8])), ctr_inputs(), seed=1)
    tables, arrays = hand_tables()
    path = save_ranking_model(model, tables, ITEM_IDS, USER_IDS, MAX_HISTORY, tmp_path_factory.mktemp("rank") / "m")
    return model, arrays, path


def test_scores_are_the_models_probabilities_for_the_same_impressions(exported):
    model, arrays, path = exported
    request = {"user_id": np.array(["user-3", "stranger"]),
               "history": np.array([["item-2", "nope", "item-6", ""], ["item-1", "", "", ""]]),
               "candidate_ids": np.array([["item-10", "item-7", "unknown"], ["item-2", "item-5", "item-9"]])}
    served = check_in_fresh_process(path, request, core_only=True)["probabilities"]
    history_3 = np.array([2, 6, PAD_ITEM, PAD_ITEM, PAD_ITEM, PAD_ITEM])  # unknown IDs dropped, padded
    history_unknown = np.array([1] + [PAD_ITEM] * 5)
    rows = [impression(arrays, 3, 10, history_3, 3), impression(arrays, 3, 7, history_3, 0),
            impression(arrays, 3, -1, history_3, 0), impression(arrays, -1, 2, history_unknown, 0),
            impression(arrays, -1, 5, history_unknown, 0), impression(arrays, -1, 9, history_unknown, 0)]
    features = {key: tf.constant(np.stack([row[key] for row in rows]), tf.int64) for key in rows[0]}
    expected = tf.sigmoid(model.predict_logits(features)).numpy().reshape(2, 3)
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
    assert ops_unknown_to_core_tensorflow(path) == []


def test_a_candidate_list_of_the_wrong_shape_is_one_clear_error(exported):
    _, _, path = exported
    request = {"user_id": np.array(["user-3", "user-1"]), "history": np.array([["item-2"], ["item-1"]]),
               "candidate_ids": np.array([["item-10", "item-7"]])}
    with pytest.raises(RuntimeError, match="candidate_ids must have one row per user_id"):
        check_in_fresh_process(path, request, core_only=True)


def test_a_history_of_the_wrong_shape_is_one_clear_error(exported, grappler):
    _, _, path = exported
    score = tf.saved_model.load(str(path)).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="history must have one row per user_id"):
        score(user_id=tf.constant(["user-3", "user-1"]), history=tf.constant([["item-2"]]),
              candidate_ids=tf.constant([["item-10"], ["item-7"]]))


def test_akt_rec_scores_a_new_item_through_its_semantic_cluster(tmp_path):
    model = build_ranker("akt_rec", ModelConfig(ranking=RankingConfig(embedding_dim=8, mlp_units=[16],
                                                                      attention_units=[8])), ctr_inputs(), seed=1)
    tables, arrays = hand_tables()
    path = save_ranking_model(model, tables, ITEM_IDS, USER_IDS, MAX_HISTORY, tmp_path / "akt")
    request = {"user_id": np.array(["user-3"]), "history": np.array([["item-2"]]),
               "candidate_ids": np.array([["new-a", "new-b", "item-7"]]),
               "candidate_semantic_ids": np.array([[[2, 0], [-1, -1], [3, 1]]], np.int64)}
    served = check_in_fresh_process(path, request, "score_new_items", core_only=True)["probabilities"]
    history = np.array([2] + [PAD_ITEM] * 5)
    rows = [impression(arrays, 3, -1, history, 0), impression(arrays, 3, -1, history, 0),
            impression(arrays, 3, 7, history, 0)]
    features = {key: tf.constant(np.stack([row[key] for row in rows]), tf.int64) for key in rows[0]}
    features[ctr_spec.ITEM_SEMANTIC_ID] = tf.constant([[2, 0], [-1, -1], [3, 1]], tf.int64)
    expected = tf.sigmoid(model.predict_logits(features)).numpy()
    np.testing.assert_allclose(served[0], expected, rtol=1e-5, atol=1e-6)
    # The first new item is in cluster 2, the second has no semantic ID: the default item.
    assert abs(served[0, 0] - served[0, 1]) > 1e-6
    plain = check_in_fresh_process(path, {key: request[key] for key in ("user_id", "history", "candidate_ids")},
                                   core_only=True)["probabilities"]
    np.testing.assert_allclose(plain[0, [1, 2]], served[0, [1, 2]], rtol=1e-5, atol=1e-6)
