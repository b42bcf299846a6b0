import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.config.schema import ModelConfig, SemanticTowerConfig, TowerConfig
from tfrs_llmrec.data.spec import PAD_ITEM
from tfrs_llmrec.models.alpharec import AlphaRecModel
from tfrs_llmrec.serving.export import check_in_fresh_process
from tfrs_llmrec.serving.indexes import IndexSettings, build_index
from tfrs_llmrec.serving.intention import intention_queries, save_intention_index_model

NUM_USERS, NUM_ITEMS, SEMANTIC_DIM, MAX_HISTORY, K = 10, 40, 8, 4, 5
ITEM_IDS = [f"item-{index}" for index in range(NUM_ITEMS)]


class HashTextEncoder(tf.Module):
    """Stand-in language model: a fixed random unit vector per hash bucket of the text."""

    def __init__(self, dim: int, buckets: int = 64):
        super().__init__()
        self.buckets = buckets
        table = np.random.default_rng(7).normal(size=(buckets, dim)).astype(np.float32)
        self.table = tf.Variable(table / np.linalg.norm(table, axis=1, keepdims=True), trainable=False)

    def __call__(self, texts):
        return tf.gather(self.table, tf.strings.to_hash_bucket_fast(texts, self.buckets))


def build_model(item_vectors, num_users=NUM_USERS, seed=0):
    rng = np.random.default_rng(seed)
    num_items = len(item_vectors)
    users = np.repeat(np.arange(num_users), 3)
    items = rng.integers(0, num_items, size=len(users))
    config = ModelConfig(tower=TowerConfig(dim=6), semantic=SemanticTowerConfig(hidden_dims=[16]), lightgcn_layers=2)
    return AlphaRecModel(item_vectors, num_users, users, items, config, seed=seed)


def requests(texts):
    history = np.full((len(texts), MAX_HISTORY), PAD_ITEM, np.int64)
    for row in range(len(texts)):
        history[row, :row % MAX_HISTORY + 1] = (np.arange(row % MAX_HISTORY + 1) * 7 + row) % NUM_ITEMS
    return {"history": history, "query_text": np.array(texts), "alpha": np.linspace(0.3, 0.9, len(texts),
                                                                                     dtype=np.float32)}


def exact_top_k(model, queries, history):
    """The exact top-K with each row's history items removed, and their scores."""
    scores = np.asarray(queries) @ model.item_embeddings().T
    for row, items in enumerate(history):
        scores[row, items[items != PAD_ITEM]] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :K], -np.sort(-scores, axis=1)[:, :K]


def as_strings(history, item_ids):
    """int histories padded with PAD_ITEM -> raw IDs padded with ""."""
    ids = np.asarray(item_ids, dtype=object)
    return np.where(history != PAD_ITEM, ids[np.maximum(history, 0)], "").astype(str)


def returned_indices(item_ids):
    return np.vectorize(lambda text: int(text.split("-")[1]))(item_ids)


@pytest.fixture(scope="module")
def model():
    return build_model(np.random.default_rng(1).normal(size=(NUM_ITEMS, SEMANTIC_DIM)).astype(np.float32))


def test_blank_text_is_no_intention_and_alpha_broadcasts(model):
    encoder = HashTextEncoder(SEMANTIC_DIM)
    tower = model.serving_query_tower()
    inputs = requests(["a thriller", "", "   ", "comedy"])
    queries = intention_queries(tower, encoder, inputs["history"], inputs["query_text"], 0.6).numpy()
    history_only = model.fold_in_queries(inputs["history"]).numpy()
    np.testing.assert_allclose(queries[1:3], history_only[1:3], atol=1e-6)
    assert np.abs(queries[[0, 3]] - history_only[[0, 3]]).max() > 1e-2
    expected = model.fold_in_queries(inputs["history"], encoder(tf.constant(inputs["query_text"])), alpha=0.6).numpy()
    np.testing.assert_allclose(queries[[0, 3]], expected[[0, 3]], atol=1e-6)
    per_row = intention_queries(tower, encoder, inputs["history"], inputs["query_text"], tf.fill([4], 0.6))
    np.testing.assert_allclose(per_row.numpy(), queries, atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="alpha"):
        intention_queries(tower, encoder, inputs["history"], inputs["query_text"], 1.5)


def test_saved_model_reloads_and_matches_exact_top_k(model, tmp_path):
    encoder = HashTextEncoder(SEMANTIC_DIM)
    index = build_index(IndexSettings("brute_force", K + MAX_HISTORY), model.item_embeddings(), ITEM_IDS)
    path = save_intention_index_model(model.serving_query_tower(), encoder, index, ITEM_IDS, MAX_HISTORY, K,
                                      tmp_path / "intention")
    assert [entry.name for entry in tmp_path.iterdir()] == ["intention"]
    inputs = requests(["a thriller", "", "something light", "rainy day", " "])
    outputs = check_in_fresh_process(path, {**inputs, "history": as_strings(inputs["history"], ITEM_IDS)})

    has_text = np.char.strip(inputs["query_text"]) != ""
    alpha = np.where(has_text, inputs["alpha"], 0.0).astype(np.float32)
    queries = model.fold_in_queries(inputs["history"], encoder(tf.constant(inputs["query_text"])), alpha)
    exact_ids, exact_scores = exact_top_k(model, queries, inputs["history"])
    np.testing.assert_array_equal(returned_indices(outputs["item_ids"]), exact_ids)
    np.testing.assert_allclose(outputs["scores"], exact_scores, rtol=1e-5, atol=1e-6)
    # Blank rows get the history-only top-K.
    history_ids, _ = exact_top_k(model, model.fold_in_queries(inputs["history"]), inputs["history"])
    np.testing.assert_array_equal(returned_indices(outputs["item_ids"])[~has_text], history_ids[~has_text])


def test_minilm_encoder_inside_the_saved_model(tmp_path):
    from tfrs_llmrec.encoders.minilm import MiniLMEncoder

    encoder = MiniLMEncoder(max_length=32, batch_size=16)
    titles = ["Alien", "The Shining", "Toy Story", "Finding Nemo", "Heat", "Die Hard", "Notting Hill",
              "Love Actually", "Jaws", "Up", "Casablanca", "Se7en"]
    model = build_model(encoder.encode(titles), num_users=4)
    item_ids = [f"item-{index}" for index in range(len(titles))]
    index = build_index(IndexSettings("brute_force", K + MAX_HISTORY), model.item_embeddings(), item_ids)
    path = save_intention_index_model(model.serving_query_tower(), encoder.module, index, item_ids, MAX_HISTORY, K,
                                      tmp_path / "minilm")
    texts = ["a scary film about a shark", "", "an animated film for children"]
    history = np.array([[0, 1, PAD_ITEM, PAD_ITEM], [2, 3, 9, PAD_ITEM], [4, PAD_ITEM, PAD_ITEM, PAD_ITEM]])
    outputs = check_in_fresh_process(path, {"history": as_strings(history, item_ids), "query_text": np.array(texts),
                                            "alpha": np.float32(0.8)})
    alpha = np.array([0.8, 0.0, 0.8], np.float32)
    exact_ids, exact_scores = exact_top_k(model, model.fold_in_queries(history, encoder.encode(texts), alpha), history)
    np.testing.assert_array_equal(returned_indices(outputs["item_ids"]), exact_ids)
    np.testing.assert_allclose(outputs["scores"], exact_scores, rtol=1e-4, atol=1e-5)
