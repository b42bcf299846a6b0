"""A servable CTR ranker: raw user ID, raw history and raw candidate IDs in, click probabilities out.

The SavedModel's `serving_default` (also named `score`) takes
- `user_id` string [B]; an unknown user scores through the model's learned default user,
- `history` string [B, L], the user's clicked items, most recent first; unknown IDs and "" are
  ignored and only the CTR samples' max_history most recent known items count,
- `candidate_ids` string [B, C]; an unknown candidate scores through the learned default item,
and returns `probabilities` float [B, C]. `score_new_items` takes `candidate_semantic_ids` int64
[B, C, levels] too (the RQ-VAE codes of the candidates, -1 where unknown): AKT-Rec scores an
unknown candidate whose cluster it knows through that cluster's embedding; the other rankers, and
known candidates, ignore them. Everything else an impression carries (user attributes,
item genres and year, semantic clusters, activity buckets of the training impressions, the user's
training impressions in the candidate's cluster) is looked up in tables inside the graph
(`ImpressionTables`), so the request needs nothing the CTR samples did not have. The model holds
only core TensorFlow ops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrs_llmrec.data import ctr_spec
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, USER_INDEX
from tfrs_llmrec.serving.export import (CANDIDATE_IDS, HISTORY_IDS, SCORE_SIGNATURE, USER_ID, HistoryLookup,
                                        _lookup_table, rows_per_user_check, save_atomically)

PROBABILITIES = "probabilities"
CANDIDATE_SEMANTIC_IDS = "candidate_semantic_ids"
NEW_ITEMS_SIGNATURE = "score_new_items"


def _with_unknown_row(table: np.ndarray) -> np.ndarray:
    """The table with a last row of zeros (unknown values) for index -1."""
    table = np.asarray(table)
    return np.concatenate([table, np.zeros((1, *table.shape[1:]), table.dtype)])


class ImpressionTables(tf.Module):
    """(user indices [B], history indices [B, L], candidate indices [B, C]) -> the features of the
    B * C impressions in CTR-sample layout, row b * C + c for candidate c of user b. Index -1 is
    unknown: zero attributes, activity bucket 0.

    Built from the CTR samples (`from_samples`): per-user attributes and per-item genres, year and
    cluster as the impressions carry them, the activity buckets of the training split, and the
    user's training impressions per item cluster (the cross activity).
    """

    def __init__(self, user_attributes: np.ndarray, item_genres: np.ndarray, item_year: np.ndarray,
                 item_cluster: np.ndarray, user_activity: np.ndarray, item_activity: np.ndarray,
                 cross_keys: np.ndarray, cross_buckets: np.ndarray, num_clusters: int):
        super().__init__()
        self.user_attributes = tf.constant(_with_unknown_row(user_attributes), tf.int64)
        self.item_genres = tf.constant(_with_unknown_row(item_genres), tf.int64)
        self.item_year = tf.constant(_with_unknown_row(item_year), tf.int64)
        self.item_cluster = tf.constant(_with_unknown_row(item_cluster), tf.int64)
        self.user_activity = tf.constant(_with_unknown_row(user_activity), tf.int64)
        self.item_activity = tf.constant(_with_unknown_row(item_activity), tf.int64)
        self.num_clusters = int(num_clusters)
        self.cross = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(cross_keys, tf.int64), tf.constant(cross_buckets, tf.int64)), default_value=0)

    @classmethod
    def from_samples(cls, samples, split_arrays: Optional[Mapping[str, Dict[str, np.ndarray]]] = None
                     ) -> "ImpressionTables":
        """Tables of a `tfrs_llmrec.data.ctr.CtrDataset`; `split_arrays` ({split: samples.arrays(split)})
        spares reading the samples again when the caller has them."""
        num_users, num_items, buckets = samples.num_users, samples.num_items, samples.activity_buckets
        user_attributes = np.zeros((num_users, len(ctr_spec.USER_ATTRIBUTE_NAMES)), np.int64)
        item_genres = np.zeros((num_items, samples.max_genres), np.int64)
        item_year = np.zeros(num_items, np.int64)
        item_cluster = np.zeros(num_items, np.int64)
        train = None
        for split in ("test", "valid", "train"):  # training values last: they win
            arrays = split_arrays[split] if split_arrays is not None else samples.arrays(split)
            users, items = arrays[USER_INDEX], arrays[ITEM_INDEX]
            user_attributes[users] = arrays[ctr_spec.USER_ATTRIBUTES]
            item_genres[items] = arrays[ctr_spec.ITEM_GENRES]
            item_year[items] = arrays[ctr_spec.ITEM_YEAR]
            item_cluster[items] = arrays[ctr_spec.ITEM_CLUSTER]
            train = arrays
        num_clusters = int(item_cluster.max()) + 1 if num_items else 1
        keys, counts = np.unique(train[USER_INDEX] * num_clusters + train[ctr_spec.ITEM_CLUSTER], return_counts=True)
        return cls(user_attributes, item_genres, item_year, item_cluster,
                   ctr_spec.activity_bucket(samples.user_train_impressions(), buckets),
                   ctr_spec.activity_bucket(samples.item_train_impressions(), buckets),
                   keys, ctr_spec.activity_bucket(counts, buckets), num_clusters)

    def _rows(self, table: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
        unknown = tf.shape(table, out_type=tf.int64)[0] - 1
        return tf.gather(table, tf.where(indices >= 0, indices, unknown))

    def __call__(self, users, history, candidates) -> Dict[str, tf.Tensor]:
        users, history, candidates = (tf.cast(users, tf.int64), tf.cast(history, tf.int64),
                                      tf.cast(candidates, tf.int64))
        per_user = tf.shape(candidates)[1]
        flat_users = tf.repeat(users, per_user)
        flat_items = tf.reshape(candidates, [-1])
        clusters = self._rows(self.item_cluster, flat_items)
        known_pair = (flat_users >= 0) & (flat_items >= 0)
        cross = tf.where(known_pair, self.cross.lookup(flat_users * self.num_clusters + clusters), 0)
        return {
            USER_INDEX: flat_users, ITEM_INDEX: flat_items, HISTORY: tf.repeat(history, per_user, axis=0),
            ctr_spec.USER_ATTRIBUTES: self._rows(self.user_attributes, flat_users),
            ctr_spec.ITEM_GENRES: self._rows(self.item_genres, flat_items),
            ctr_spec.ITEM_YEAR: self._rows(self.item_year, flat_items), ctr_spec.ITEM_CLUSTER: clusters,
            ctr_spec.USER_ACTIVITY: self._rows(self.user_activity, flat_users),
            ctr_spec.ITEM_ACTIVITY: self._rows(self.item_activity, flat_items), ctr_spec.CROSS_ACTIVITY: cross,
        }


def candidate_logits(model, tables: ImpressionTables, users, history, candidates, semantic_ids=None) -> tf.Tensor:
    """[B, C] click logits of a ranker for each user's candidates (indices; -1 unknown), optionally
    with the candidates' semantic IDs [B, C, levels] (-1 where not known)."""
    features = tables(users, history, candidates)
    if semantic_ids is not None:
        semantic_ids = tf.cast(semantic_ids, tf.int64)
        features[ctr_spec.ITEM_SEMANTIC_ID] = tf.reshape(semantic_ids, [-1, tf.shape(semantic_ids)[-1]])
    logits = model.predict_logits(features)
    return tf.reshape(logits, tf.shape(candidates))


class RankingModule(tf.Module):
    def __init__(self, model, tables: ImpressionTables, item_ids: Sequence[str], user_ids: Sequence[str],
                 max_history: int):
        super().__init__()
        self.model = model
        self.tables = tables
        self.history = HistoryLookup(item_ids, max_history)
        self.items = self.history.items
        self.users = _lookup_table(user_ids)
        request = (tf.TensorSpec([None], tf.string, name=USER_ID),
                   tf.TensorSpec([None, None], tf.string, name=HISTORY_IDS),
                   tf.TensorSpec([None, None], tf.string, name=CANDIDATE_IDS))
        self.score = tf.function(self._score, input_signature=request)
        self.score_new_items = tf.function(self._score_new_items, input_signature=request + (
            tf.TensorSpec([None, None, None], tf.int64, name=CANDIDATE_SEMANTIC_IDS),))

    def _score(self, user_id, history, candidate_ids, semantic_ids=None):
        with tf.control_dependencies(rows_per_user_check(user_id, {HISTORY_IDS: history,
                                                                   CANDIDATE_IDS: candidate_ids})):
            history_indices = self.history.recent(history)[0]
            logits = candidate_logits(self.model, self.tables, self.users.lookup(user_id), history_indices,
                                      self.items.lookup(candidate_ids), semantic_ids)
            return {PROBABILITIES: tf.sigmoid(logits)}

    def _score_new_items(self, user_id, history, candidate_ids, candidate_semantic_ids):
        with tf.control_dependencies([tf.debugging.assert_equal(
                tf.shape(candidate_semantic_ids)[:2], tf.shape(candidate_ids),
                message="candidate_semantic_ids must have one row of codes per candidate")]):
            return self._score(user_id, history, candidate_ids, candidate_semantic_ids)


def save_ranking_model(model, tables: ImpressionTables, item_ids: Sequence[str], user_ids: Sequence[str],
                       max_history: int, path: Path) -> Path:
    """Saves the ranker's scoring SavedModel (module docstring) atomically."""
    module = RankingModule(model, tables, item_ids, user_ids, max_history)
    return save_atomically(module, Path(path), {"serving_default": module.score, SCORE_SIGNATURE: module.score,
                                                NEW_ITEMS_SIGNATURE: module.score_new_items})

