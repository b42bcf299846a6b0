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

How the product is computed. `tf.sparse.sparse_dense_matmul` is slow on CPU, and so is its
gradient (an adjoint product). Because Â = S A S with S = D^-1/2 and A a 0/1 pattern,
Â X = S (A (S X)), and A Y is `tf.sparse.segment_sum(Y, columns, rows)`: one fused, sorted
gather-and-add per row, with no [nnz, d] intermediate and no multiply per entry. The rows are cut
into a few blocks of about equal nnz, one op each, so TF's inter-op threads share the work
(the kernel itself is single-threaded). Because Â is symmetric, the gradient of
sum_k alpha_k Â^k E is the same polynomial applied to the incoming gradient, which `call`
computes with the same fast products (a tf.custom_gradient). On CPU the kernel adds each row's
entries one after another in a fixed order, so forward and backward are bit-identical run to run,
with or without tf.config.experimental.enable_op_determinism (tested on CPU only).

That fast path needs Â's structure, which it reads once per adjacency with NumPy (the "plan":
entries sorted by row, S from the row counts) and checks: Â must be square and symmetric, and
every value must equal S[r] S[c] to float rounding, as `normalized_adjacency` guarantees. Any
other SparseTensor (non-square, non-symmetric, other weights, repeated indices) or a symbolic one
(e.g. a tf.function argument, which cannot be read when tracing) still gives exact results,
through `tf.sparse.sparse_dense_matmul` and its own gradients, with a warning that it is the slow
path. The layer remembers the last concrete adjacency it read, by tensor identity: the models
pass the same SparseTensor every step, so Â is read and checked once, at the first trace.
No gradient flows to the adjacency's values on the fast path; they are graph constants.
"""

import dataclasses
import warnings
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

# Row blocks per product: independent ops that TF's inter-op threads run in parallel.
_NUM_BLOCKS = 4


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


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How `LightGCNPropagation` multiplies by one adjacency, whose own `indices` and `values` tensors
    key the cache. Fast path: Â = S A S with `scale` S's diagonal [n, 1] (float64) and A's rows cut
    into `blocks` of (columns, rows counted from the block's first row, number of rows), in row
    order. Slow path (sparse_dense_matmul): both None."""
    indices: tf.Tensor
    values: tf.Tensor
    scale: Optional[tf.Tensor] = None
    blocks: Optional[List[Tuple[tf.Tensor, tf.Tensor, int]]] = None


def _slow_path_reason(num_rows, num_columns, rows, columns, values) -> Optional[str]:
    """Why the fast path cannot take this concrete adjacency (entries sorted row-major), or None."""
    if num_rows != num_columns:
        return f"the adjacency is not square ({num_rows} x {num_columns})"
    if np.any((np.diff(rows) == 0) & (np.diff(columns) == 0)):
        return "the adjacency has repeated indices"
    transposed = np.lexsort((rows, columns))  # entry order of Â^T, row-major
    if not (np.array_equal(columns[transposed], rows) and np.array_equal(rows[transposed], columns)
            and np.array_equal(values[transposed], values)):
        return "the adjacency is not symmetric"
    return None


def _make_plan(adjacency: tf.sparse.SparseTensor) -> _Plan:
    """The fast path's plan for a concrete symmetric D^-1/2 A D^-1/2, else a slow one, with a warning."""
    slow = _Plan(adjacency.indices, adjacency.values)
    if any(tf.is_symbolic_tensor(part) for part in (adjacency.indices, adjacency.values, adjacency.dense_shape)):
        reason = "the adjacency is symbolic (e.g. a tf.function argument), so it cannot be checked when tracing"
    else:
        num_rows, num_columns = (int(size) for size in adjacency.dense_shape.numpy())
        indices = adjacency.indices.numpy().astype(np.int64)
        order = np.lexsort((indices[:, 1], indices[:, 0]))
        rows, columns = indices[order, 0], indices[order, 1]
        values = adjacency.values.numpy().astype(np.float64)[order]
        reason = _slow_path_reason(num_rows, num_columns, rows, columns, values)
        if reason is None:
            degree = np.bincount(rows, minlength=num_rows)
            scale = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1)), 0.0)
            if not np.allclose(values, scale[rows] * scale[columns], rtol=1e-6, atol=0.0):
                reason = "the adjacency's values are not D^-1/2 A D^-1/2 of its 0/1 pattern"
    if reason is not None:
        warnings.warn(f"LightGCNPropagation: {reason}; using tf.sparse.sparse_dense_matmul (exact, slow)",
                      stacklevel=4)
        return slow
    index_dtype = np.int32 if num_rows < 2 ** 31 else np.int64
    # Block boundaries: the rows where about every (nnz / _NUM_BLOCKS)-th entry falls.
    cuts = rows[np.arange(1, _NUM_BLOCKS) * len(rows) // _NUM_BLOCKS] if len(rows) else np.zeros(0, np.int64)
    row_bounds = np.unique(np.concatenate([[0], cuts, [num_rows]]))
    entry_bounds = np.searchsorted(rows, row_bounds)
    with tf.init_scope():  # eager constants, captured by reference in a tf.function
        blocks = [(tf.constant(columns[a:b].astype(index_dtype)), tf.constant((rows[a:b] - first).astype(index_dtype)),
                   int(last - first))
                  for first, last, a, b in zip(row_bounds[:-1], row_bounds[1:], entry_bounds[:-1], entry_bounds[1:])]
        return dataclasses.replace(slow, scale=tf.constant(scale[:, None]), blocks=blocks)


class LightGCNPropagation(tf.keras.layers.Layer):
    """sum_k alpha_k Â^k E over k = 0..num_layers; no trainable weights.

    Fast (see the module docstring) for the symmetric Â that `normalized_adjacency` returns; exact
    but slow, with a warning, for any other SparseTensor.

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
        self._plan = None  # the last concrete adjacency's _Plan

    def _plan_for(self, adjacency) -> _Plan:
        """The cached _Plan when `adjacency` is the one it was made for, else a new one."""
        plan = self._plan
        if plan is not None and plan.indices is adjacency.indices and plan.values is adjacency.values:
            return plan
        plan = _make_plan(adjacency)
        if not tf.is_symbolic_tensor(adjacency.indices):  # a symbolic one belongs to a single trace
            self._plan = plan
        return plan

    def _layers(self, plan, embeddings, adjacency):
        """[E_0, ..., Â^K E_0], with the plan's fast products or sparse_dense_matmul."""
        if plan.blocks is None:
            adjacency = tf.sparse.SparseTensor(adjacency.indices, tf.cast(adjacency.values, embeddings.dtype),
                                               adjacency.dense_shape)
            product = lambda layer: tf.sparse.sparse_dense_matmul(adjacency, layer)  # noqa: E731
        else:
            scale = tf.cast(plan.scale, embeddings.dtype)

            def product(layer):  # Â E = S A (S E), one tf.sparse.segment_sum per row block
                scaled = scale * layer
                return scale * tf.concat([tf.sparse.segment_sum(scaled, columns, rows, num_segments=num_rows)
                                          for columns, rows, num_rows in plan.blocks], axis=0)
        layers = [embeddings]
        for _ in range(self.num_layers):
            layers.append(product(layers[-1]))
        return layers

    def layer_outputs(self, embeddings, adjacency):
        """[E_0, Â E_0, ..., Â^K E_0]: every layer's output, e.g. to fold a new node in at serving time."""
        embeddings = tf.convert_to_tensor(embeddings)
        return self._layers(self._plan_for(adjacency), embeddings, adjacency)

    def call(self, embeddings, adjacency):
        """embeddings: [(U+I), d]; adjacency: the SparseTensor from `normalized_adjacency`."""
        embeddings = tf.convert_to_tensor(embeddings)
        if self.num_layers == 0 and self._alphas[0] == 1.0:
            return tf.identity(embeddings)
        plan = self._plan_for(adjacency)

        def polynomial(vectors):
            layers = self._layers(plan, vectors, adjacency)
            return tf.add_n([alpha * layer for alpha, layer in zip(self._alphas, layers)])

        if plan.blocks is None:
            return polynomial(embeddings)

        @tf.custom_gradient
        def propagate(vectors):
            # Â^T = Â, so d/dE <G, sum_k alpha_k Â^k E> = sum_k alpha_k Â^k G.
            return polynomial(vectors), polynomial

        return propagate(embeddings)

    @property
    def alphas(self):
        """The layer weights alpha_0..alpha_K."""
        return list(self._alphas)

    def get_config(self):
        return {**super().get_config(), "num_layers": self.num_layers, "layer_weights": self.layer_weights}
