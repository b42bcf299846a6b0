"""The training split's (user, item) pairs as a membership test inside the graph.

BPR's sampled negative should be an item the user did not interact with; a uniform draw over
the catalogue hits one of the user's training items with probability |I_u| / |I| (7.7% on
average on MovieLens-100K, over 40% for its heaviest users), and such a "negative" pushes a
positive down. RecBole's sampler redraws those; `TrainableModel.uniform_negatives` does the same
with this test.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


class TrainingPositives:
    """Sorted int64 keys user * num_items + item; `contains` is a binary search per pair."""

    def __init__(self, users: np.ndarray, items: np.ndarray, num_items: int):
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        if users.shape != items.shape:
            raise ValueError(f"users {users.shape} and items {items.shape} must pair up")
        self.num_items = int(num_items)
        keys = np.unique(users * self.num_items + items)
        # An empty split still needs one key to search; -1 matches no pair.
        self.keys = tf.constant(keys if len(keys) else np.array([-1], np.int64), tf.int64)

    def contains(self, users: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
        """Whether each (users[i], items[i]) is a training pair; any shape, the same for both."""
        query = tf.cast(users, tf.int64) * self.num_items + tf.cast(items, tf.int64)
        flat = tf.reshape(query, [-1])
        position = tf.minimum(tf.searchsorted(self.keys, flat), tf.size(self.keys, tf.int32) - 1)
        return tf.reshape(tf.equal(tf.gather(self.keys, position), flat), tf.shape(query))
