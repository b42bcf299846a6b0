"""Bayesian Personalised Ranking (Rendle et al., UAI 2009), as MF-BPR and LightGCN train.

For a user with a positive item scored s+ and a sampled negative scored s-, BPR maximises
log sigmoid(s+ - s-), i.e. minimises -log sigmoid(s+ - s-) = softplus(s- - s+). softplus is
evaluated by TensorFlow in a form that neither overflows for large margins (softplus(x) -> x)
nor loses the gradient for very negative ones.

LightGCN regularises only the layer-0 embeddings of the users and items in the batch, with the
squared L2 norm halved and averaged over the batch (`l2_regularization`).
"""

from typing import Optional

import tensorflow as tf

from tfrs_llmrec.losses.precision import full_precision


def bpr_loss(positive_scores: tf.Tensor, negative_scores: tf.Tensor,
             sample_weight: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Mean softplus(negative - positive).

    Args:
      positive_scores: [B].
      negative_scores: [B] (one negative per row) or [B, N] (N negatives per row; a row's loss is
        the mean over its N pairs, so every row counts the same whatever N is).
      sample_weight: [B] optional per-row weights (weighted mean; all-zero weights give 0).
    """
    positive_scores = full_precision(positive_scores)
    negative_scores = tf.cast(negative_scores, positive_scores.dtype)
    if negative_scores.shape.rank == 2:
        losses = tf.reduce_mean(tf.math.softplus(negative_scores - positive_scores[:, tf.newaxis]), axis=1)
    elif negative_scores.shape.rank == 1:
        losses = tf.math.softplus(negative_scores - positive_scores)
    else:
        raise ValueError(f"negative_scores must have shape [B] or [B, N], got {negative_scores.shape}")
    if sample_weight is None:
        return tf.reduce_mean(losses)
    weights = tf.cast(sample_weight, losses.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(losses * weights), tf.reduce_sum(weights))


def l2_regularization(*tensors: tf.Tensor, weight: float, batch_size: Optional[tf.Tensor] = None) -> tf.Tensor:
    """weight * (1/2) * sum of the squared entries of all `tensors`, divided by the batch size.

    Pass the embeddings looked up for the batch (e.g. user, positive item and negative item
    rows, [B, d] each), not the whole tables. The batch size is the first dimension of the first
    tensor unless given; an empty batch gives 0.
    """
    if not tensors:
        raise ValueError("l2_regularization needs at least one tensor")
    tensors = [full_precision(tensor) for tensor in tensors]
    dtype = tensors[0].dtype
    squared = tf.add_n([tf.reduce_sum(tf.square(tf.cast(tensor, dtype))) for tensor in tensors])
    if batch_size is None:
        batch_size = tf.shape(tensors[0])[0]
    batch_size = tf.cast(batch_size, dtype)
    weight = tf.cast(tf.convert_to_tensor(weight, dtype_hint=dtype), dtype)
    return weight * 0.5 * tf.math.divide_no_nan(squared, batch_size)
