"""Intention-aware serving: a user's history plus a free-text wish -> top-K items, one SavedModel.

AlphaRec's user intention capture: the text ("something scary for a rainy night") is encoded by
the language model that embedded the catalogue, and the query tower blends it into the history's
mean vector, (1 - alpha) * history + alpha * intention, before its MLP. The text encoder runs
inside the graph, so clients send plain strings.

The SavedModel's `serving_default` takes
- `history`: string [B, L] raw item IDs, most recent first (unknown IDs and "" are ignored, as in
  `export.RetrievalModule`),
- `query_text`: string [B]; a blank text (empty or whitespace) means no intention for its row,
  which is served exactly as the history alone (alpha 0),
- `alpha`: float32, a scalar for the batch or one value per row, in [0, 1] (a signature has no
  optional inputs, so it is required),
and returns the top-K `item_ids` (raw ids, never one of the history's) and `scores`, like the
`serving_default` of `export.RetrievalModule`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import tensorflow as tf

from tfrs_llmrec.data.spec import HISTORY
from tfrs_llmrec.serving.export import HistoryLookup, SCANN_SAVE_OPTIONS, save_atomically, top_k_excluding

QUERY_TEXT = "query_text"
ALPHA = "alpha"


def intention_queries(query_tower: Callable, text_encoder: Callable, history, query_text, alpha) -> tf.Tensor:
    """Queries of (history, text) rows.

    Args:
      query_tower: called as `query_tower({HISTORY: history}, intention_vectors=..., alpha=...)`
        with [B, d_sem] vectors and [B] alphas, e.g. `AlphaRecModel.serving_query_tower()` or a
        `SemanticHistoryQueryTower`.
      text_encoder: maps string [B] to [B, d_sem] vectors in the item vectors' language space.
      history: int64 [B, L], PAD_ITEM-padded.
      query_text: string [B].
      alpha: scalar or [B] blend weights in [0, 1].
    """
    history = tf.convert_to_tensor(history, tf.int64)
    query_text = tf.convert_to_tensor(query_text, tf.string)
    alpha = tf.broadcast_to(tf.cast(alpha, tf.float32), tf.shape(query_text))
    with tf.control_dependencies([
            tf.debugging.assert_greater_equal(alpha, 0.0, message="alpha must be in [0, 1]"),
            tf.debugging.assert_less_equal(alpha, 1.0, message="alpha must be in [0, 1]")]):
        has_intention = tf.strings.length(tf.strings.strip(query_text)) > 0
    intention_vectors = tf.cast(text_encoder(query_text), tf.float32)
    # Zero both the weight and the vector of a blank row: (1 - 0) * history + 0 * 0 is the history
    # mean exactly, whatever the encoder makes of an empty string.
    intention_vectors = tf.where(has_intention[:, tf.newaxis], intention_vectors, 0.0)
    return query_tower({HISTORY: history}, intention_vectors=intention_vectors,
                       alpha=tf.where(has_intention, alpha, 0.0))


class _IntentionIndexModule(tf.Module):
    def __init__(self, query_tower: Callable, text_encoder: Callable, index: tf.keras.layers.Layer,
                 item_ids: Sequence[str], max_history: int, k: int):
        super().__init__()
        self.query_tower = query_tower
        self.text_encoder = text_encoder
        self.index = index
        self.history = HistoryLookup(item_ids, max_history)
        self.k = k
        self.serve = tf.function(self._serve, input_signature=(
            tf.TensorSpec([None, None], tf.string, name=HISTORY),
            tf.TensorSpec([None], tf.string, name=QUERY_TEXT),
            tf.TensorSpec(None, tf.float32, name=ALPHA)))  # any rank: a scalar or [B]

    def _serve(self, history, query_text, alpha):
        history_indices, history_ids = self.history.recent(history)
        queries = intention_queries(self.query_tower, self.text_encoder, history_indices, query_text, alpha)
        scores, item_ids = self.index(queries)
        return top_k_excluding(scores, item_ids, history_ids, self.k)


def save_intention_index_model(query_tower: tf.Module, text_encoder: tf.Module, index: tf.keras.layers.Layer,
                               item_ids: Sequence[str], max_history: int, k: int, path: Path,
                               scann: bool = False) -> Path:
    """Saves the intention-aware top-K SavedModel (see the module docstring) atomically.

    `query_tower` and `text_encoder` must be trackable (tf.Module or Keras layer) so their
    variables and tables are saved; `index` comes from `indexes.build_index` over the item
    embeddings the queries are scored against, with k + max_history candidates (so that `k`
    remain after the history is removed). A model with a MiniLM encoder needs
    `import tensorflow_text` before loading.
    """
    module = _IntentionIndexModule(query_tower, text_encoder, index, item_ids, max_history, k)
    return save_atomically(module, path, {"serving_default": module.serve},
                           options=SCANN_SAVE_OPTIONS if scann else None)
