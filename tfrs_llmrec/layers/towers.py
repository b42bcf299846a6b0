"""ID towers: item-ID embeddings, and a query tower over the user ID and the user's history.

Histories are padded with PAD_ITEM (-1); the query tower shares the item tower's embedding
table for history items, so a user with few interactions still gets a query built from
well-trained item vectors.
"""

from typing import Optional, Sequence

import tensorflow as tf

from tfrs_llmrec.data.spec import HISTORY, PAD_ITEM, USER_INDEX
from tfrs_llmrec.layers.mlp import MLP
from tfrs_llmrec.layers.pooling import MaskedMeanPooling


class IdItemTower(tf.keras.layers.Layer):
    def __init__(self, num_items: int, dim: int, hidden_dims: Sequence[int] = (), l2_normalize: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_items = num_items
        self.embedding = tf.keras.layers.Embedding(num_items, dim, name="item_id_embedding")
        self.projection: Optional[MLP] = MLP(hidden_dims, dim) if hidden_dims else None
        self.l2_normalize = l2_normalize

    def embed_ids(self, item_indices):
        """The raw ID embeddings (shared with the query tower's history pooling)."""
        return self.embedding(tf.maximum(item_indices, 0))

    def unnormalized(self, item_indices):
        """The tower's output before L2 normalisation."""
        outputs = self.embed_ids(item_indices)
        return self.projection(outputs) if self.projection is not None else outputs

    def call(self, item_indices):
        outputs = self.unnormalized(item_indices)
        return tf.math.l2_normalize(outputs, axis=-1) if self.l2_normalize else outputs


class HistoryQueryTower(tf.keras.layers.Layer):
    """Query = MLP([user-ID embedding; mean of history item embeddings]).

    A negative user index (a user unknown to the vocabulary, at serving time) gets a zero user-ID
    embedding, so the history alone makes the query."""

    def __init__(self, item_tower: IdItemTower, num_users: int, dim: int, hidden_dims: Sequence[int] = (),
                 use_user_id: bool = True, l2_normalize: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.item_tower = item_tower
        self.user_embedding = (tf.keras.layers.Embedding(num_users, dim, name="user_id_embedding")
                               if use_user_id else None)
        self.pooling = MaskedMeanPooling()
        self.projection = MLP(hidden_dims, dim)
        self.l2_normalize = l2_normalize

    def call(self, features):
        history = features[HISTORY]
        pooled = self.pooling(self.item_tower.embed_ids(history), history != PAD_ITEM)
        parts = [pooled]
        if self.user_embedding is not None:
            users = features[USER_INDEX]
            known = tf.cast(users >= 0, self.compute_dtype)[:, tf.newaxis]
            parts.append(self.user_embedding(tf.maximum(users, 0)) * known)
        outputs = self.projection(tf.concat(parts, axis=-1))
        return tf.math.l2_normalize(outputs, axis=-1) if self.l2_normalize else outputs
