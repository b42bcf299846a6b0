"""REMI's routing regularisation: keeps each interest's routing from collapsing onto a few behaviours.

For a routing (or attention) matrix A [K, L] of one user, rows over the behaviours, REMI centres
each row over the behaviours and penalises the diagonal of the interests' covariance:

    C = A - mean_l(A),    Cov = C C^T / dim,    loss = ||diag(Cov)||_2^2 = sum_k (sum_l C_{k,l}^2 / dim)^2.

A row that puts all its weight on one behaviour has a large variance; a uniform row has none, so
the loss is 0 for uniform routing. `dim` is the embedding width, the normaliser REMI uses. Only
the diagonal is needed, so it is computed directly as sum_l C^2 / dim without forming Cov.

With a mask, the mean runs over the valid behaviours only and padded entries (whatever they hold)
are left out of C. REMI sums the per-user penalty over the batch; we return its mean over the
batch instead, so the regulariser's weight does not depend on the batch size (multiply by B for
REMI's sum). Users without any valid behaviour contribute 0 and still count in the mean.
"""

from typing import Optional

import tensorflow as tf

from tfrs_llmrec.losses.precision import full_precision


def routing_regularization_loss(routing: tf.Tensor, mask: Optional[tf.Tensor] = None, *, dim: int) -> tf.Tensor:
    """Scalar mean over the batch of ||diag(C C^T / dim)||_2^2 (float32 for float16 inputs).

    Args:
      routing: [B, K, L] routing or attention weights, rows over the L behaviours.
      mask: [B, L] boolean, True at real behaviours; None means every position is valid.
      dim: the embedding width REMI divides the covariance by (positive).
    """
    if dim <= 0:
        raise ValueError(f"dim must be positive, got {dim}")
    routing = full_precision(routing)
    valid = (tf.ones_like(routing, tf.bool) if mask is None
             else tf.broadcast_to(tf.cast(mask, tf.bool)[:, tf.newaxis, :], tf.shape(routing)))
    kept = tf.where(valid, routing, tf.zeros_like(routing))
    count = tf.reduce_sum(tf.cast(valid, routing.dtype), axis=-1, keepdims=True)
    mean = tf.math.divide_no_nan(tf.reduce_sum(kept, axis=-1, keepdims=True), count)
    centred = tf.where(valid, routing - mean, tf.zeros_like(routing))
    variances = tf.reduce_sum(tf.square(centred), axis=-1) / dim  # diag(Cov), [B, K]
    return tf.reduce_mean(tf.reduce_sum(tf.square(variances), axis=-1))
