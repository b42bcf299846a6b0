"""Servable exports: string IDs in and out, history exclusion, unknown IDs, the query/score/item
signatures, core-TF-only BruteForce models, and user-table towers for transductive models; every
SavedModel is reloaded in a fresh process."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tfrs_llmrec.config.schema import ModelConfig, TowerConfig
from tfrs_llmrec.data.spec import PAD_ITEM
from tfrs_llmrec.models import TwoTowerModel
from tfrs_llmrec.models.mf_bpr import MatrixFactorizationModel
from tfrs_llmrec.serving.export import (UNKNOWN_CANDIDATE_SCORE, RetrievalModule, UserTableTower,
                                        calls_in_fresh_process, check_in_fresh_process, merge_interest_candidates,
                                        save_item_tower, save_retrieval_model, saved_model_ops, serving_query_tower)
from tfrs_llmrec.serving.indexes import IndexSettings, build_index, top_k_recall

NUM_USERS, NUM_ITEMS, MAX_HISTORY, K, SEMANTIC_DIM = 20, 300, 4, 10, 6
ITEM_IDS = [f"item-{index}" for index in range(NUM_ITEMS)]
USER_IDS = [f"user-{index}" for index in range(NUM_USERS)]


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(0)
    return TwoTowerModel(NUM_USERS, NUM_ITEMS, np.ones(NUM_ITEMS), ModelConfig(tower=TowerConfig(dim=8)))


def save(model, directory, kind, tower=None):
    tower = tower if tower is not None else model.query_tower
    index = build_index(IndexSettings(kind, K + MAX_HISTORY, num_leaves=10, num_leaves_to_search=10),
                        model.item_embeddings(), ITEM_IDS)
    module = RetrievalModule(tower, ITEM_IDS, USER_IDS, model.item_embeddings(), MAX_HISTORY, index, K)
    return save_retrieval_model(module, directory / kind, scann=kind == "scann")


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("export")
    return {kind: save(model, directory, kind) for kind in ("brute_force", "scann")}


def int_history(rows):
    history = np.full((len(rows), MAX_HISTORY), PAD_ITEM, np.int64)
    for row, items in enumerate(rows):
        history[row, :len(items)] = items
    return history


def string_history(rows, width=MAX_HISTORY):
    return np.array([[f"item-{item}" if isinstance(item, (int, np.integer)) else item for item in items]
                     + [""] * (width - len(items)) for items in rows])


def queries(model, users, rows):
    return model.query_embeddings(np.asarray(users, np.int64), int_history(rows))


def exact_without_history(model, users, rows, k=K):
    scores = queries(model, users, rows) @ model.item_embeddings().T
    for row, items in enumerate(rows):
        scores[row, items] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def as_indices(item_ids):
    return np.vectorize(lambda text: int(text.split("-")[1]))(item_ids)


def test_top_k_recall_by_hand():
    assert top_k_recall([[1, 2], [3, 4]], [[2, 1], [3, 5]]) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        top_k_recall([[1]], [[1, 2]])


@pytest.mark.parametrize("kind", ["brute_force", "scann"])
def test_top_k_in_string_ids_never_returns_the_history(model, exported, kind):
    users = np.arange(6)
    # Each history is the user's own best items (without exclusion they would be returned first).
    unfiltered = exact_without_history(model, users, [[] for _ in users], k=3)
    rows = [list(unfiltered[row][: 1 + row % 3]) for row in range(len(users))]
    outputs = check_in_fresh_process(exported[kind], {"user_id": np.array(USER_IDS[:6]),
                                                      "history": string_history(rows)},
                                     core_only=kind == "brute_force")
    returned = as_indices(outputs["item_ids"])
    assert returned.shape == (6, K)
    for row, items in enumerate(rows):
        assert not set(items) & set(returned[row].tolist())
    # Searching every leaf with reordering makes ScaNN exact up to float ties.
    assert top_k_recall(returned, exact_without_history(model, users, rows)) == 1.0
    scores = queries(model, users, rows) @ model.item_embeddings().T
    np.testing.assert_allclose(outputs["scores"], np.take_along_axis(scores, returned, axis=1), rtol=1e-4,
                               atol=1e-5)


def test_unknown_history_ids_and_padding_are_ignored(model, exported):
    history = np.array([["nope", "item-7", "", "item-9", "also-unknown", "item-3"],
                        ["item-7", "item-9", "item-3", "", "", ""]])
    outputs = check_in_fresh_process(exported["brute_force"], {"user_id": np.array(["user-2", "user-2"]),
                                                               "history": history}, "query", core_only=True)
    expected = queries(model, [2], [[7, 9, 3]])[0]
    np.testing.assert_allclose(outputs["query_embedding"][0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs["query_embedding"][1], expected, rtol=1e-5, atol=1e-6)


def test_a_history_longer_than_max_history_keeps_the_most_recent_items(model, exported):
    history = string_history([[5, 6, 7, 8, 9, 10]], width=6)
    outputs = check_in_fresh_process(exported["brute_force"], {"user_id": np.array(["user-1"]), "history": history},
                                     "query", core_only=True)
    np.testing.assert_allclose(outputs["query_embedding"][0], queries(model, [1], [[5, 6, 7, 8]])[0],
                               rtol=1e-5, atol=1e-6)


def test_an_unknown_user_is_served_from_the_history_alone(model, exported):
    outputs = check_in_fresh_process(exported["brute_force"], {"user_id": np.array(["stranger"]),
                                                               "history": string_history([[4, 5]])},
                                     "query", core_only=True)
    tower = model.query_tower
    history = tf.constant(int_history([[4, 5]]))
    pooled = tower.pooling(tower.item_tower.embed_ids(history), history != PAD_ITEM)
    expected = tf.math.l2_normalize(tower.projection(tf.concat([pooled, tf.zeros([1, 8])], axis=-1)), axis=-1)
    np.testing.assert_allclose(outputs["query_embedding"], expected.numpy(), rtol=1e-5, atol=1e-6)


def test_score_signature_ranks_a_candidate_list(model, exported):
    candidates = np.array([["item-1", "item-250", "not-an-item"], ["item-3", "item-3", "item-0"]])
    outputs = check_in_fresh_process(exported["brute_force"], {
        "user_id": np.array(["user-0", "user-5"]), "history": string_history([[2], []]),
        "candidate_ids": candidates}, "score", core_only=True)
    query = queries(model, [0, 5], [[2], []])
    items = model.item_embeddings()
    expected = np.array([[query[0] @ items[1], query[0] @ items[250]], [query[1] @ items[3], query[1] @ items[0]]])
    np.testing.assert_allclose(outputs["scores"][0, :2], expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs["scores"][1], expected[1][[0, 0, 1]], rtol=1e-5, atol=1e-6)
    assert outputs["scores"][0, 2] == UNKNOWN_CANDIDATE_SCORE


def test_item_tower_returns_the_trained_embeddings(model, tmp_path):
    path = save_item_tower(ITEM_IDS, model.item_embeddings(), tmp_path / "items")
    outputs = check_in_fresh_process(path, {"item_id": np.array(["item-9", "unknown", "item-0"])}, core_only=True)
    np.testing.assert_allclose(outputs["embedding"][[0, 2]], model.item_embeddings()[[9, 0]], rtol=1e-6)
    assert outputs["known"].tolist() == [True, False, True] and not outputs["embedding"][1].any()


@pytest.fixture(scope="module")
def motir():
    from tfrs_llmrec.config.schema import SemanticTowerConfig
    from tfrs_llmrec.models.motir import MotiRModel

    tf.keras.utils.set_random_seed(2)
    vectors = np.random.default_rng(2).normal(size=(NUM_ITEMS, SEMANTIC_DIM)).astype(np.float32)
    model = MotiRModel(NUM_USERS, vectors, np.arange(NUM_ITEMS) % 7, ModelConfig(
        tower=TowerConfig(dim=8), semantic=SemanticTowerConfig(hidden_dims=[16])), seed=2)
    model.set_stage("joint")
    model.fused_items(tf.range(2, dtype=tf.int64))  # builds the gate
    return model, vectors


def test_semantic_item_tower_embeds_new_items_from_their_vectors(motir, tmp_path):
    model, vectors = motir
    tower = model.text_only_item_tower()
    path = save_item_tower(ITEM_IDS, model.item_embeddings(), tmp_path / "items", tower, SEMANTIC_DIM)
    new_vectors = np.random.default_rng(3).normal(size=(2, SEMANTIC_DIM)).astype(np.float32)
    inputs = {"item_id": np.array(["item-4", "new-a", "new-b", "new-c"]),
              "semantic_vector": np.concatenate([vectors[[4]], new_vectors, np.zeros((1, SEMANTIC_DIM), np.float32)])}
    outputs = check_in_fresh_process(path, inputs, "from_vector", core_only=True)
    assert outputs["known"].tolist() == [True, False, False, False]
    assert outputs["from_semantics"].tolist() == [False, True, True, False]
    # A known ID keeps its trained (fused) embedding, not its text's.
    np.testing.assert_allclose(outputs["embedding"][0], model.item_embeddings()[4], rtol=1e-5, atol=1e-6)
    # A new item with a scalar gate and no ID embedding: the semantic tower's embedding of its vector.
    np.testing.assert_allclose(outputs["embedding"][1:3], model.semantic_tower.project(new_vectors).numpy(),
                               rtol=1e-5, atol=1e-6)
    assert not outputs["embedding"][3].any()
    by_id = check_in_fresh_process(path, {"item_id": np.array(["item-4", "new-a"])}, core_only=True)
    np.testing.assert_allclose(by_id["embedding"][0], model.item_embeddings()[4], rtol=1e-5, atol=1e-6)
    assert ops_unknown_to_core_tensorflow(path) == []


def test_text_item_tower_encodes_new_items_in_the_graph(motir, tmp_path):
    from tests.serving.test_intention import HashTextEncoder

    model, _ = motir
    encoder = HashTextEncoder(SEMANTIC_DIM)
    path = save_item_tower(ITEM_IDS, model.item_embeddings(), tmp_path / "text", model.text_only_item_tower(),
                           SEMANTIC_DIM, encoder)
    texts = np.array(["ignored for a known ID", "A haunted lighthouse", "  ", "Space racing"])
    outputs = check_in_fresh_process(path, {"item_id": np.array(["item-9", "new-a", "new-b", "new-c"]),
                                            "item_text": texts})
    assert outputs["known"].tolist() == [True, False, False, False]
    assert outputs["from_semantics"].tolist() == [False, True, False, True]
    np.testing.assert_allclose(outputs["embedding"][0], model.item_embeddings()[9], rtol=1e-5, atol=1e-6)
    encoded = encoder(tf.constant(texts[[1, 3]])).numpy()
    np.testing.assert_allclose(outputs["embedding"][[1, 3]], model.semantic_tower.project(encoded).numpy(),
                               rtol=1e-5, atol=1e-6)
    assert not outputs["embedding"][2].any()


def test_signatures_have_the_names_dtypes_and_shapes_tf_serving_reads(exported):
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((exported["brute_force"] / "saved_model.pb").read_bytes())
    signatures = proto.meta_graphs[0].signature_def

    def described(name, tensors):
        return {key: (tf.dtypes.as_dtype(value.dtype).name, [dim.size for dim in value.tensor_shape.dim])
                for key, value in getattr(signatures[name], tensors).items()}

    assert described("serving_default", "inputs") == {"user_id": ("string", [-1]), "history": ("string", [-1, -1])}
    assert described("serving_default", "outputs") == {"item_ids": ("string", [-1, K]), "scores": ("float32", [-1, K])}
    assert described("query", "outputs") == {"query_embedding": ("float32", [-1, 8])}
    assert described("score", "inputs")["candidate_ids"] == ("string", [-1, -1])
    assert described("score", "outputs") == {"scores": ("float32", [-1, -1])}


CORE_OP_CHECK = """
import json, sys
from tfrs_llmrec._keras_env import use_legacy_keras
use_legacy_keras()
from tensorflow.python.framework import op_def_registry
print(json.dumps(sorted(op for op in json.loads(sys.argv[1]) if op_def_registry.get(op) is None)))
"""


def ops_unknown_to_core_tensorflow(path):
    """The SavedModel's ops that a process with only core TensorFlow (no ScaNN, no TF Text) lacks."""
    ops = sorted(saved_model_ops(path))
    finished = subprocess.run([sys.executable, "-c", CORE_OP_CHECK, json.dumps(ops)], capture_output=True,
                              text=True, timeout=300, check=True)
    return json.loads(finished.stdout.strip().splitlines()[-1])


def test_brute_force_and_item_models_hold_only_core_tensorflow_ops(exported, model, tmp_path):
    item_tower = save_item_tower(ITEM_IDS, model.item_embeddings(), tmp_path / "items")
    assert ops_unknown_to_core_tensorflow(exported["brute_force"]) == []
    assert ops_unknown_to_core_tensorflow(item_tower) == []
    # The check can fail: the ScaNN model holds ScaNN's custom ops.
    assert any(op.startswith("Scann") for op in ops_unknown_to_core_tensorflow(exported["scann"]))


def test_transductive_models_serve_a_table_of_their_users(tmp_path):
    tf.keras.utils.set_random_seed(1)
    no_pairs = np.zeros(0, np.int64)
    mf = MatrixFactorizationModel(NUM_USERS, NUM_ITEMS, no_pairs, no_pairs, ModelConfig(tower=TowerConfig(dim=8)))
    tower = serving_query_tower(mf, NUM_USERS, MAX_HISTORY)
    assert isinstance(tower, UserTableTower)
    path = save(mf, tmp_path, "brute_force", tower)
    outputs = check_in_fresh_process(path, {"user_id": np.array(["user-3", "user-19", "stranger"]),
                                            "history": string_history([[1], [], [2, 3]])}, "query", core_only=True)
    users = mf.query_embeddings(np.arange(NUM_USERS))
    np.testing.assert_allclose(outputs["query_embedding"][:2], users[[3, 19]], rtol=1e-6)
    np.testing.assert_allclose(outputs["query_embedding"][2], users.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_several_calls_in_one_process_match_one_call_each_and_a_failing_call_is_named(exported):
    request = {"user_id": np.array(["user-0", "stranger"]), "history": string_history([[2, 7], [4]])}
    scored = {**request, "candidate_ids": np.array([["item-1", "item-9"], ["item-3", "nope"]])}
    batched = calls_in_fresh_process(exported["brute_force"], [("query", request), ("serving_default", request),
                                                               ("score", scored)], core_only=True)
    for outputs, (signature, inputs) in zip(batched, [("query", request), ("serving_default", request),
                                                      ("score", scored)]):
        alone = check_in_fresh_process(exported["brute_force"], inputs, signature, core_only=True)
        assert sorted(outputs) == sorted(alone)
        for name in alone:
            np.testing.assert_array_equal(outputs[name], alone[name])
    mismatched = {**request, "candidate_ids": np.array([["item-1", "item-9"]])}
    with pytest.raises(RuntimeError, match=r"brute_force \(score\): .*candidate_ids must have one row per user_id"):
        calls_in_fresh_process(exported["brute_force"], [("query", request), ("score", mismatched)], core_only=True)


@pytest.mark.parametrize("signature, mismatched", [
    ("serving_default", "history"), ("query", "history"), ("score", "history"), ("score", "candidate_ids")])
def test_a_request_whose_rows_do_not_match_its_users_is_one_clear_error(exported, grappler, signature, mismatched):
    request = {"user_id": np.array(["user-0", "user-5"]), "history": string_history([[2], [4]]),
               "candidate_ids": np.array([["item-1", "item-9"], ["item-3", "item-0"]])}
    request[mismatched] = request[mismatched][:1]
    call = tf.saved_model.load(str(exported["brute_force"])).signatures[signature]
    inputs = {name: tf.constant(request[name]) for name in call.structured_input_signature[1]}
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{mismatched} must have one row per user_id"):
        call(**inputs)


def test_reload_failure_names_the_directory(tmp_path):
    (tmp_path / "broken").mkdir()
    with pytest.raises(RuntimeError, match="broken: reloading in a fresh process failed"):
        check_in_fresh_process(tmp_path / "broken", {"user_id": np.array(["x"])})


def test_merging_per_interest_candidates_keeps_each_items_best_score_once():
    # Two users, two interests x three candidates each (item indices); user 0 sees item 7 from
    # both interests (scores 0.9 and 0.4), user 1 sees item 2 from both (0.3 and 0.6).
    scores = tf.constant([[0.9, 0.5, 0.1, 0.4, 0.8, 0.2], [0.3, 0.6, 0.6, 0.7, 0.1, 0.0]])
    items = tf.constant([[7, 3, 1, 7, 5, 4], [2, 8, 2, 9, 6, 5]], tf.int64)
    merged, order = merge_interest_candidates(scores, items)
    lowest = UNKNOWN_CANDIDATE_SCORE
    np.testing.assert_allclose(merged.numpy(), [[0.9, 0.8, 0.5, lowest, 0.2, 0.1],
                                                [0.7, 0.6, 0.6, lowest, 0.1, 0.0]])
    np.testing.assert_array_equal(tf.gather(items, order, batch_dims=1).numpy(), [[7, 5, 3, 7, 4, 1],
                                                                                  [9, 8, 2, 2, 6, 5]])
