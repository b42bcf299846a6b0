"""LightGCN propagation over the user-item bipartite graph (He et al., SIGIR 2020).

Nodes are the U users followed by the I items (item i is node U + i). The adjacency A has a 1
between user u and item i for every observed interaction, in both directions, and nothing else
(no self-loops, no user-user or item-item edges). LightGCN propagates with the symmetrically
normalised Â = D^-1/2 A D^-1/2, i.e. Â[u, U+i] = Â[U+i, u] = 1 / sqrt(deg(u) * deg(i)), with no
feature transforms or non-linearities, and represents each node by a weighted sum of its layer
outputs E_k = Â^k E_0, k = 0..K (uniform weights 1/(K+1) in the paper). AlphaRec uses the same
propagation on top of its language-model item projections.

Â is kept as a tf.sparse.SparseTensor: dense it would need (U+I)^2 floats, 18 GB for a graph
with 67k nodes, while the sparse form stores 2 entries per interaction.
"""

from typing import Sequence, Tuple, Union

import tensorflow as tf


def normalized_adjacency(num_users: int, num_items: int, user_indices, item_indices,
                         dtype: tf.DType = tf.float32) -> tf.sparse.SparseTensor:
    """Â = D^-1/2 A D^-1/2 of the bipartite graph, as a (U+I) x (U+I) SparseTensor.

    Args:
      num_users: U; user indices are in [0, U).
      num_items: I; item indices are in [0, I).
      user_indices, item_indices: [E] integer endpoints of the interactions. Repeated
        (user, item) pairs are one edge. Users or items without edges get empty rows and columns.
      dtype: value dtype.
    """
    if num_users <= 0 or num_items <= 0:
        raise ValueError(f"num_users and num_items must be positive, got {num_users} and {num_items}")
    users = tf.cast(tf.reshape(user_indices, [-1]), tf.int64)
    items = tf.cast(tf.reshape(item_indices, [-1]), tf.int64)
    tf.debugging.assert_equal(tf.size(users), tf.size(items),
                              message="user_indices and item_indices must have the same length")
    tf.debugging.assert_non_negative(users, message="negative user index")
    tf.debugging.assert_non_negative(items, message="negative item index")
    tf.debugging.assert_less(users, tf.constant(num_users, tf.int64), message="user index >= num_users")
    tf.debugging.assert_less(items, tf.constant(num_items, tf.int64), message="item index >= num_items")

    # One key per (user, item) pair, so duplicates collapse to a single edge.
    keys, _ = tf.unique(users * num_items + items)
    users = keys // num_items
    items = keys % num_items

    ones = tf.ones_like(users, dtype=dtype)
    user_degree = tf.math.unsorted_segment_sum(ones, users, num_users)
    item_degree = tf.math.unsorted_segment_sum(ones, items, num_items)
    # Every edge endpoint has degree >= 1; isolated nodes never appear in an edge, so no 0 division.
    values = tf.math.rsqrt(tf.gather(user_degree, users) * tf.gather(item_degree, items))

    item_nodes = items + num_users
    indices = tf.concat([tf.stack([users, item_nodes], axis=1), tf.stack([item_nodes, users], axis=1)], axis=0)
    num_nodes = num_users + num_items
    adjacency = tf.sparse.SparseTensor(indices, tf.concat([values, values], axis=0),
                                       dense_shape=[num_nodes, num_nodes])
    return tf.sparse.reorder(adjacency)


def split_user_item(embeddings: tf.Tensor, num_users: int) -> Tuple[tf.Tensor, tf.Tensor]:
    """Splits node embeddings [(U+I), d] into (users [U, d], items [I, d])."""
    return embeddings[:num_users], embeddings[num_users:]


class LightGCNPropagation(tf.keras.layers.Layer):
    """sum_k alpha_k Â^k E over k = 0..num_layers, with sparse matmuls; no trainable weights.

    Args:
      num_layers: K >= 0; K = 0 returns the input embeddings.
      layer_weights: "mean" for alpha_k = 1 / (K + 1), or K + 1 floats alpha_0..alpha_K.
    """

    def __init__(self, num_layers: int, layer_weights: Union[str, Sequence[float]] = "mean", **kwargs):
        super().__init__(**kwargs)
        num_layers = int(num_layers)
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        if isinstance(layer_weights, str):
            if layer_weights != "mean":
                raise ValueError(f"layer_weights must be 'mean' or {num_layers + 1} floats, got {layer_weights!r}")
            weights = [1.0 / (num_layers + 1)] * (num_layers + 1)
        else:
            weights = [float(weight) for weight in layer_weights]
            if len(weights) != num_layers + 1:
                raise ValueError(f"layer_weights needs num_layers + 1 = {num_layers + 1} values, got {len(weights)}")
        self.num_layers = num_layers
        self.layer_weights = layer_weights if isinstance(layer_weights, str) else weights
        self._alphas = weights

    def layer_outputs(self, embeddings, adjacency):
        """[E_0, Â E_0, ..., Â^K E_0]: every layer's output, e.g. to fold a new node in at serving time."""
        adjacency = tf.sparse.SparseTensor(adjacency.indices, tf.cast(adjacency.values, embeddings.dtype),
                                           adjacency.dense_shape)
        layers = [embeddings]
        for _ in range(self.num_layers):
            layers.append(tf.sparse.sparse_dense_matmul(adjacency, layers[-1]))
        return layers

    def call(self, embeddings, adjacency):
        """embeddings: [(U+I), d]; adjacency: the SparseTensor from `normalized_adjacency`."""
        if self.num_layers == 0 and self._alphas[0] == 1.0:
            return tf.identity(embeddings)
        return tf.add_n([alpha * layer for alpha, layer in zip(self._alphas, self.layer_outputs(embeddings, adjacency))])

    @property
    def alphas(self):
        """The layer weights alpha_0..alpha_K."""
        return list(self._alphas)

    def get_config(self):
        return {**super().get_config(), "num_layers": self.num_layers, "layer_weights": self.layer_weights}
