"""Embeddings of a CTR impression's side features (tfrs_llmrec.data.ctr_spec): user attributes,
item genres and year, activity buckets, and the item's frozen language-model vector.

IDs are left to the models: the DIN family embeds them directly, AKT-Rec through cluster-gated
embeddings. Categorical values are indices with 0 meaning unknown or absent; index 0 has a
trainable row like any other, except genres, whose padding 0s are left out of the mean.
"""

from typing import Dict, Mapping, Optional

import numpy as np
import tensorflow as tf

from tfrs_llmrec.data import ctr_spec
from tfrs_llmrec.layers.initializers import embedding_uniform, glorot


def _embedding(size: int, dim: int, seed: Optional[int], offset: int, name: str) -> tf.keras.layers.Embedding:
    return tf.keras.layers.Embedding(max(int(size), 1), dim, embeddings_initializer=embedding_uniform(seed, offset),
                                     name=name)


class ImpressionSideFeatures(tf.keras.layers.Layer):
    """Side features of a batch of impressions -> {"user": [B, d_user], "item": [B, d_item],
    "activity": [B, 3 * dim]}, each a concatenation of [B, dim] embeddings.

    Args:
      attribute_sizes: vocabulary sizes (0 included) of "age", "gender", "occupation", "genres",
        "year", as in a CTR dataset's manifest; a missing or zero size gets a one-row table.
      activity_buckets: number of activity buckets.
      dim: every embedding's size.
      item_vectors: [I, d_sem] frozen language-model vectors (None: not used); projected to dim.
      seed: seeds the initialisers.
    """

    def __init__(self, attribute_sizes: Mapping[str, int], activity_buckets: int, dim: int,
                 item_vectors: Optional[np.ndarray] = None, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.user_attributes = [_embedding(attribute_sizes.get(name, 0), dim, seed, offset, f"user_{name}")
                                for offset, name in enumerate(ctr_spec.USER_ATTRIBUTE_NAMES)]
        self.genres = _embedding(attribute_sizes.get("genres", 0), dim, seed, 3, "item_genres")
        self.year = _embedding(attribute_sizes.get("year", 0), dim, seed, 4, "item_year")
        self.activity = [_embedding(activity_buckets, dim, seed, 5 + offset, name)
                         for offset, name in enumerate(ctr_spec.ACTIVITY_FEATURES)]
        self.item_vectors = None
        if item_vectors is not None:
            # A last, zero row for items without a vector (unknown or default IDs).
            vectors = np.concatenate([np.asarray(item_vectors, np.float32),
                                      np.zeros((1, np.shape(item_vectors)[1]), np.float32)])
            self.item_vectors = self.add_weight(name="item_vectors", shape=vectors.shape, dtype=tf.float32,
                                                initializer=tf.keras.initializers.Constant(vectors), trainable=False)
            self.vector_projection = tf.keras.layers.Dense(
                dim, use_bias=False, name="item_vector_projection",
                kernel_initializer=glorot(seed, 8))

    def item_vector_embedding(self, item_indices) -> Optional[tf.Tensor]:
        """[..., dim] projection of the items' language-model vectors (None without them); an index
        outside the catalogue (negative, or the default ID) has none and gets zeros."""
        if self.item_vectors is None:
            return None
        no_vector = tf.shape(self.item_vectors, out_type=tf.int64)[0] - 1
        indices = tf.cast(item_indices, tf.int64)
        indices = tf.where((indices < 0) | (indices > no_vector), no_vector, indices)
        return self.vector_projection(tf.gather(self.item_vectors, indices))

    def call(self, features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        attributes = features[ctr_spec.USER_ATTRIBUTES]
        user = [table(attributes[:, position]) for position, table in enumerate(self.user_attributes)]
        genres = features[ctr_spec.ITEM_GENRES]
        genre_embeddings = self.genres(genres)
        present = tf.cast(genres > 0, genre_embeddings.dtype)[..., tf.newaxis]
        genre_mean = tf.math.divide_no_nan(tf.reduce_sum(genre_embeddings * present, axis=1),
                                           tf.reduce_sum(present, axis=1))
        item = [genre_mean, self.year(features[ctr_spec.ITEM_YEAR])]
        activity = [table(features[name]) for name, table in zip(ctr_spec.ACTIVITY_FEATURES, self.activity)]
        return {"user": tf.concat(user, axis=-1), "item": tf.concat(item, axis=-1),
                "activity": tf.concat(activity, axis=-1)}
