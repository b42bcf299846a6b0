"""Servable SavedModels of a trained retrieval model, in raw string IDs.

One retrieval SavedModel per index kind, with three signatures that TF Serving accepts:
- `serving_default` (`user_id` string [B], `history` string [B, L]) -> `item_ids` string [B, K],
  `scores` float [B, K]: the top-K items, never one of the given history items;
- `query` (same inputs) -> `query_embedding` float [B, d], or [B, K, d] for a multi-interest model
  (MIND, ComiRec-SA, REMI, EIMF): top-K then searches the index once per interest and merges the
  lists (an item keeps its best interest's score, repeats removed), and `score` takes each
  candidate's best interest;
- `score` (`user_id`, `history`, `candidate_ids` string [B, C]) -> `scores` float [B, C], to rank a
  candidate list; an unknown candidate scores float32's lowest value, so it sorts last.
Item-tower SavedModels give the item embeddings without the trainer, so an index can be rebuilt,
new items included:
- `item_tower/`, `serving_default` (`item_id` string [B]) -> `embedding` float [B, d], `known`
  bool [B] (zeros for an unknown ID). Semantic models (MotiR, AlphaRec) add `from_vector`
  (`item_id`, `semantic_vector` float [B, d_sem], the item's language-model vector) -> `embedding`,
  `known`, `from_semantics` bool [B]: a known ID keeps its trained embedding; an unknown one is
  embedded from its vector as the model embeds an item with no ID or graph signal
  (`text_only_item_tower`); an unknown ID with an all-zero vector gets zeros.
- `item_tower_text/` (semantic models whose encoder runs in TensorFlow, e.g. MiniLM),
  `serving_default` (`item_id`, `item_text` string [B]) -> the same outputs, with the encoder that
  embedded the catalogue inside the graph; a blank text counts as no text. The text is what the
  features job encodes for the model's semantic source (the export manifest names it).

ID handling happens in the graph: string IDs go through static vocabulary tables. History IDs that
are not in the vocabulary, and empty strings (padding), are ignored; histories are read most recent
first and cut to the model's max_history before both the query and the exclusion. An unknown
`user_id` is served from the history alone (models with a user-ID embedding use a zero vector for
it); models without a query tower (MF-BPR, LightGCN: transductive) serve a table of their users'
embeddings, and an unknown user gets the mean user embedding.

The BruteForce and `item_tower/` models hold only ops registered by core TensorFlow (stock TF
Serving loads them); `item_tower_text/` with MiniLM needs TF Text's ops and the ScaNN model
needs ScaNN's custom ops (`llmrec serve`, or a model server built with ScaNN).
Saves are published atomically (`building_directory`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tfrs_llmrec.atomic_files import building_directory
from tfrs_llmrec.data.spec import HISTORY, PAD_ITEM, USER_INDEX

QUERY_EMBEDDING = "query_embedding"
ITEM_IDS = "item_ids"
SCORES = "scores"
USER_ID = "user_id"
HISTORY_IDS = "history"
CANDIDATE_IDS = "candidate_ids"
ITEM_ID = "item_id"
EMBEDDING = "embedding"
KNOWN = "known"
SEMANTIC_VECTOR = "semantic_vector"
ITEM_TEXT = "item_text"
FROM_SEMANTICS = "from_semantics"
VECTOR_SIGNATURE = "from_vector"
QUERY_SIGNATURE = "query"
SCORE_SIGNATURE = "score"
# ScaNN's TF ops live in the "Scann" namespace, which SavedModel refuses unless allowed.
SCANN_SAVE_OPTIONS = tf.saved_model.SaveOptions(namespace_whitelist=["Scann"])
UNKNOWN_CANDIDATE_SCORE = np.finfo(np.float32).min


def save_atomically(module: tf.Module, path: Path, signatures, options=None) -> Path:
    with building_directory(path) as staging:
        tf.saved_model.save(module, str(staging), signatures=signatures, options=options)
    return Path(path)


def _lookup_table(keys: Sequence[str]) -> tf.lookup.StaticHashTable:
    """string ID -> index, -1 when unknown (core TF ops: HashTableV2 / LookupTableFindV2)."""
    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant(list(keys), tf.string), tf.range(len(keys), dtype=tf.int64), tf.string, tf.int64)
    return tf.lookup.StaticHashTable(initializer, default_value=PAD_ITEM)


class UserTableTower(tf.Module):
    """The query tower of a transductive model: its trained users' embeddings; an unknown user
    (index -1) gets the mean user embedding."""

    def __init__(self, user_embeddings: np.ndarray):
        super().__init__()
        table = np.asarray(user_embeddings, np.float32)
        self.table = tf.Variable(np.concatenate([table, table.mean(axis=0, keepdims=True)]), trainable=False)

    def __call__(self, features):
        users = features[USER_INDEX]
        unknown_row = tf.shape(self.table, out_type=tf.int64)[0] - 1
        return tf.gather(self.table, tf.where(users >= 0, users, unknown_row))


def serving_query_tower(model, num_users: int, max_history: int):
    """The model's own query tower, or a user table for models that only score their training users."""
    tower = model.serving_query_tower()
    if tower is not None:
        return tower
    users = np.arange(num_users, dtype=np.int64)
    return UserTableTower(model.query_embeddings(users, np.full((num_users, max_history), PAD_ITEM, np.int64)))


class HistoryLookup(tf.Module):
    """Request histories in string IDs -> the model's item indices."""

    def __init__(self, item_ids: Sequence[str], max_history: int):
        super().__init__()
        self.items = _lookup_table(item_ids)
        self.max_history = max_history

    def recent(self, history):
        """Known history items, most recent first, cut to max_history: (indices padded with
        PAD_ITEM [B, max_history], their string IDs padded with "" [B, <= max_history])."""
        indices = self.items.lookup(history)
        known = indices != PAD_ITEM
        kept_indices = tf.ragged.boolean_mask(indices, known)[:, :self.max_history]
        kept_ids = tf.ragged.boolean_mask(history, known)[:, :self.max_history]
        return (kept_indices.to_tensor(default_value=PAD_ITEM, shape=[None, self.max_history]),
                kept_ids.to_tensor(default_value=""))


def top_k_excluding(scores, item_ids, history_ids, k: int) -> dict:
    """The best `k` of an index's candidates [B, k + max_history] that are not in `history_ids`."""
    seen = tf.reduce_any(tf.equal(item_ids[:, :, tf.newaxis], history_ids[:, tf.newaxis, :]), axis=-1)
    masked = tf.where(seen, tf.constant(UNKNOWN_CANDIDATE_SCORE, tf.float32), scores)
    best_scores, best = tf.math.top_k(masked, k=k)
    return {SCORES: best_scores, ITEM_IDS: tf.gather(item_ids, best, batch_dims=1)}


def as_interests(queries):
    """Queries as [B, K, d]: a single-vector query [B, d] is K = 1."""
    return queries if queries.shape.rank == 3 else queries[:, tf.newaxis, :]


def merge_interest_candidates(scores, item_indices):
    """Merges the candidates of K per-interest searches ([B, K * n] scores and item indices):
    returns the scores sorted descending, with every repeat of an item after its best score set to
    the lowest score (so a top-k never returns an item twice), and the order applied [B, K * n]."""
    order = tf.argsort(scores, axis=1, direction="DESCENDING", stable=True)
    scores, item_indices = tf.gather(scores, order, batch_dims=1), tf.gather(item_indices, order, batch_dims=1)
    width = tf.shape(item_indices)[1]
    earlier = tf.linalg.band_part(tf.ones([width, width], tf.bool), -1, 0) & ~tf.eye(width, dtype=tf.bool)
    repeated = tf.reduce_any(tf.equal(item_indices[:, :, tf.newaxis], item_indices[:, tf.newaxis, :]) & earlier,
                             axis=2)
    return tf.where(repeated, tf.constant(UNKNOWN_CANDIDATE_SCORE, scores.dtype), scores), order


def interest_scores(queries: np.ndarray, item_embeddings: np.ndarray) -> np.ndarray:
    """[B, N] scores of queries [B, d] or [B, K, d] (each item's best interest) against the items."""
    queries = np.asarray(queries, np.float32)
    if queries.ndim == 2:
        return queries @ item_embeddings.T
    return np.einsum("bkd,nd->bkn", queries, item_embeddings).max(axis=1)


def rows_per_user_check(user_id, requests: Dict[str, tf.Tensor]) -> List[tf.Operation]:
    """Assertions that each request tensor (keyed by its input name) has one row per user_id.
    Serving code runs under them (tf.control_dependencies), so a caller sees their message, not a
    shape error of some later op, in whatever order the graph's ops run."""
    return [tf.debugging.assert_equal(tf.shape(tensor)[0], tf.shape(user_id)[0],
                                      message=f"{name} must have one row per {USER_ID}")
            for name, tensor in requests.items()]


class RetrievalModule(tf.Module):
    """The serving signatures over a query tower, the item embeddings and a top-K index layer."""

    def __init__(self, query_tower: Callable, item_ids: Sequence[str], user_ids: Sequence[str],
                 item_embeddings: np.ndarray, max_history: int, index: tf.keras.layers.Layer, k: int):
        super().__init__()
        self.query_tower = query_tower
        self.history = HistoryLookup(item_ids, max_history)
        self.items = self.history.items
        self.users = _lookup_table(user_ids)
        self.item_embeddings = tf.Variable(np.asarray(item_embeddings, np.float32), trainable=False)
        self.index = index
        self.k = k
        ids = tf.TensorSpec([None], tf.string, name=USER_ID)
        history = tf.TensorSpec([None, None], tf.string, name=HISTORY_IDS)
        self.top_k = tf.function(self._top_k, input_signature=(ids, history))
        self.query = tf.function(self._query, input_signature=(ids, history))
        self.score = tf.function(self._score, input_signature=(
            ids, history, tf.TensorSpec([None, None], tf.string, name=CANDIDATE_IDS)))

    def signatures(self) -> dict:
        return {"serving_default": self.top_k, QUERY_SIGNATURE: self.query, SCORE_SIGNATURE: self.score}

    def _query_embedding(self, user_id, history_indices):
        return self.query_tower({USER_INDEX: self.users.lookup(user_id), HISTORY: history_indices})

    def _query(self, user_id, history):
        with tf.control_dependencies(rows_per_user_check(user_id, {HISTORY_IDS: history})):
            return {QUERY_EMBEDDING: self._query_embedding(user_id, self.history.recent(history)[0])}

    def _score(self, user_id, history, candidate_ids):
        with tf.control_dependencies(rows_per_user_check(user_id, {HISTORY_IDS: history,
                                                                   CANDIDATE_IDS: candidate_ids})):
            queries = as_interests(self._query_embedding(user_id, self.history.recent(history)[0]))
            candidates = self.items.lookup(candidate_ids)
            known = candidates != PAD_ITEM
            embeddings = tf.gather(self.item_embeddings, tf.maximum(candidates, 0))
            scores = tf.reduce_max(tf.einsum("bkd,bcd->bkc", queries, embeddings), axis=1)
            return {SCORES: tf.where(known, scores, tf.constant(UNKNOWN_CANDIDATE_SCORE, tf.float32))}

    def _top_k(self, user_id, history):
        with tf.control_dependencies(rows_per_user_check(user_id, {HISTORY_IDS: history})):
            history_indices, history_ids = self.history.recent(history)
            queries = self._query_embedding(user_id, history_indices)
            # The index returns k + max_history candidates, so k remain after removing the history.
            if queries.shape.rank == 2:
                scores, item_ids = self.index(queries)
            else:
                # One search per interest, merged: each item keeps its best interest's score.
                shape = tf.shape(queries)
                scores, item_ids = self.index(tf.reshape(queries, [-1, shape[2]]))
                item_ids = tf.reshape(item_ids, [shape[0], -1])
                # Repeats are found on vocabulary indices: comparing strings pairwise costs ~50x more.
                scores, order = merge_interest_candidates(tf.reshape(scores, [shape[0], -1]),
                                                          self.items.lookup(item_ids))
                item_ids = tf.gather(item_ids, order, batch_dims=1)
            return top_k_excluding(scores, item_ids, history_ids, self.k)


class ItemTowerModule(tf.Module):
    """The item side of a trained model as signatures (see the module docstring).

    Args:
      item_ids, item_embeddings: the catalogue and its trained embeddings, row i for item_ids[i].
      text_only_tower: for semantic models, [B, d_sem] language-model vectors -> embeddings of items
        known by nothing else (`RecommenderModel.text_only_item_tower`); None for ID models.
      semantic_dim: d_sem, the vectors' size (with `text_only_tower`).
      text_encoder: string [B] -> [B, d_sem] vectors, the encoder that embedded the catalogue (with
        `text_only_tower`); None leaves out the text signature.
    """

    def __init__(self, item_ids: Sequence[str], item_embeddings: np.ndarray, text_only_tower: Callable = None,
                 semantic_dim: int = None, text_encoder: Callable = None):
        super().__init__()
        if text_encoder is not None and text_only_tower is None:
            raise ValueError("a text encoder needs the text-only item tower it feeds")
        self.items = _lookup_table(item_ids)
        self.item_embeddings = tf.Variable(np.asarray(item_embeddings, np.float32), trainable=False)
        self.text_only_tower = text_only_tower
        self.text_encoder = text_encoder
        ids = tf.TensorSpec([None], tf.string, name=ITEM_ID)
        self.embed = tf.function(self._embed, input_signature=(ids,))
        if text_only_tower is not None:
            self.embed_vectors = tf.function(self._embed_vectors, input_signature=(
                ids, tf.TensorSpec([None, semantic_dim], tf.float32, name=SEMANTIC_VECTOR)))
        if text_encoder is not None:
            self.embed_texts = tf.function(self._embed_texts, input_signature=(
                ids, tf.TensorSpec([None], tf.string, name=ITEM_TEXT)))

    def signatures(self) -> dict:
        if self.text_encoder is not None:
            return {"serving_default": self.embed_texts}
        signatures = {"serving_default": self.embed}
        if self.text_only_tower is not None:
            signatures[VECTOR_SIGNATURE] = self.embed_vectors
        return signatures

    def _known(self, item_id):
        indices = self.items.lookup(item_id)
        known = indices != PAD_ITEM
        return known, tf.gather(self.item_embeddings, tf.maximum(indices, 0))

    def _embed(self, item_id):
        known, embeddings = self._known(item_id)
        return {EMBEDDING: embeddings * tf.cast(known, tf.float32)[:, tf.newaxis], KNOWN: known}

    def _with_semantics(self, item_id, vectors, has_semantics):
        known, embeddings = self._known(item_id)
        from_semantics = ~known & has_semantics
        # Every row goes through the tower (one batched call); rows that do not use it are replaced.
        semantic = self.text_only_tower(vectors)
        embeddings = tf.where(known[:, tf.newaxis], embeddings,
                              tf.where(from_semantics[:, tf.newaxis], semantic, tf.zeros_like(semantic)))
        return {EMBEDDING: embeddings, KNOWN: known, FROM_SEMANTICS: from_semantics}

    def _embed_vectors(self, item_id, semantic_vector):
        return self._with_semantics(item_id, semantic_vector, tf.reduce_any(semantic_vector != 0.0, axis=-1))

    def _embed_texts(self, item_id, item_text):
        vectors = tf.cast(self.text_encoder(item_text), tf.float32)
        return self._with_semantics(item_id, vectors, tf.strings.length(tf.strings.strip(item_text)) > 0)


def save_retrieval_model(module: RetrievalModule, path: Path, scann: bool) -> Path:
    return save_atomically(module, path, module.signatures(), options=SCANN_SAVE_OPTIONS if scann else None)


def save_item_tower(item_ids: Sequence[str], item_embeddings: np.ndarray, path: Path,
                    text_only_tower: Callable = None, semantic_dim: int = None, text_encoder: Callable = None) -> Path:
    """Saves an `ItemTowerModule` atomically: with `text_encoder` the text model (TF Text ops
    inside for MiniLM), otherwise the core-TF-ops model, with `from_vector` for semantic models."""
    module = ItemTowerModule(item_ids, item_embeddings, text_only_tower, semantic_dim, text_encoder)
    return save_atomically(module, path, module.signatures())


def check_in_fresh_process(saved_model_dir: Path, inputs: Dict[str, np.ndarray], signature: str = "serving_default",
                           core_only: bool = False, timeout: int = 600) -> Dict[str, np.ndarray]:
    """Loads the SavedModel in a new Python process, calls `signature`, returns its outputs. With
    `core_only` the process registers no custom ops (no ScaNN, no TF Text), as stock TF Serving."""
    return calls_in_fresh_process(saved_model_dir, [(signature, inputs)], core_only, timeout)[0]


def calls_in_fresh_process(saved_model_dir: Path, calls: Sequence[Tuple[str, Dict[str, np.ndarray]]],
                           core_only: bool = False, timeout: int = 600) -> List[Dict[str, np.ndarray]]:
    """`check_in_fresh_process` for several (signature, inputs) calls of one SavedModel, in one
    process: a new process costs seconds of TensorFlow import, the calls themselves milliseconds."""
    with tempfile.TemporaryDirectory() as scratch:
        command = [sys.executable, "-m", "tfrs_llmrec.serving.reload", str(saved_model_dir)] + (
            ["--core-only"] if core_only else [])
        outputs_paths = []
        for position, (signature, inputs) in enumerate(calls):
            inputs_path, outputs_path = Path(scratch) / f"inputs-{position}.npz", Path(scratch) / f"outputs-{position}.npz"
            np.savez(inputs_path, **inputs)
            command += ["--call", signature, str(inputs_path), str(outputs_path)]
            outputs_paths.append(outputs_path)
        # Quiet TF and ScaNN's C++ logging in the child; failures still come back on stderr.
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "GLOG_minloglevel": "2"}
        finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        if finished.returncode != 0:
            tail = "\n".join(finished.stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"{saved_model_dir}: reloading in a fresh process failed:\n{tail}")
        results = []
        for outputs_path in outputs_paths:
            with np.load(outputs_path, allow_pickle=False) as outputs:
                results.append({name: outputs[name] for name in outputs.files})
        return results


def saved_model_ops(saved_model_dir: Path) -> set:
    """Every op type the SavedModel's graphs use, inside its functions too (calls of the
    SavedModel's own functions are not ops and are left out)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())
    ops = set()
    for meta_graph in proto.meta_graphs:
        functions = {function.signature.name for function in meta_graph.graph_def.library.function}
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
        ops -= functions
    return ops

