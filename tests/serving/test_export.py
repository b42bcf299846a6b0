import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.config.schema import ModelConfig, TowerConfig
from tfrs_llmrec.data.spec import PAD_ITEM
from tfrs_llmrec.models import TwoTowerModel
from tfrs_llmrec.serving import (IndexSettings, build_index, check_in_fresh_process, save_index_model,
                                 save_query_model, top_k_recall)

NUM_ITEMS, MAX_HISTORY = 300, 4


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(0)
    return TwoTowerModel(20, NUM_ITEMS, np.ones(NUM_ITEMS), ModelConfig(tower=TowerConfig(dim=8)))


def inputs():
    users = np.arange(6, dtype=np.int64)
    history = np.full((6, MAX_HISTORY), PAD_ITEM, dtype=np.int64)
    history[:, 0] = users * 7
    history[:3, 1] = 11
    return {"user_index": users, "history": history}


def exact_top_k(model, k):
    features = inputs()
    scores = model.query_embeddings(features["user_index"], features["history"]) @ model.item_embeddings().T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k], np.sort(scores, axis=1)[:, ::-1][:, :k]


def test_top_k_recall_by_hand():
    assert top_k_recall([[1, 2], [3, 4]], [[2, 1], [3, 5]]) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        top_k_recall([[1]], [[1, 2]])


def test_index_settings_defaults():
    assert IndexSettings("scann", 10).resolved_leaves(10000) == (100, 20)  # a fifth
    assert IndexSettings("scann", 100).resolved_leaves(1_000_000) == (1000, 200)
    assert IndexSettings("scann", 100).resolved_leaves(2500) == (50, 20)  # 10 x K = 40% of the items
    assert IndexSettings("scann", 10, num_leaves=8, num_leaves_to_search=50).resolved_leaves(100) == (8, 8)


def test_query_model_reloads_in_fresh_process(model, tmp_path):
    path = save_query_model(model.query_tower, MAX_HISTORY, tmp_path / "query")
    assert not list(tmp_path.glob("*.partial-*"))
    outputs = check_in_fresh_process(path, inputs())
    expected = model.query_embeddings(inputs()["user_index"], inputs()["history"])
    np.testing.assert_allclose(outputs["query_embedding"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["brute_force", "scann"])
def test_index_model_reloads_and_matches_exact_top_k(model, tmp_path, kind):
    k = 10
    item_ids = [f"item-{index}" for index in range(NUM_ITEMS)]
    index = build_index(IndexSettings(kind, k, num_leaves=10, num_leaves_to_search=10), model.item_embeddings(),
                        item_ids)
    path = save_index_model(model.query_tower, index, MAX_HISTORY, tmp_path / kind, scann=kind == "scann")
    outputs = check_in_fresh_process(path, inputs())
    exact_ids, exact_scores = exact_top_k(model, k)
    returned = np.vectorize(lambda text: int(text.split("-")[1]))(outputs["item_ids"])
    # Searching every leaf with reordering makes ScaNN exact up to float ties.
    assert top_k_recall(returned, exact_ids) == 1.0
    np.testing.assert_allclose(outputs["scores"], exact_scores, rtol=1e-4, atol=1e-5)


def test_reload_failure_names_the_directory(tmp_path):
    (tmp_path / "broken").mkdir()
    with pytest.raises(RuntimeError, match="broken: reloading in a fresh process failed"):
        check_in_fresh_process(tmp_path / "broken", inputs())
