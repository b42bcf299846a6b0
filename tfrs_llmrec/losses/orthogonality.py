"""Soft orthogonality between AKT-Rec's cluster and individual embeddings.

The individual embedding d of an ID should hold what its cluster embedding c does not; penalising
the squared cosine keeps the two directions apart without fixing their norms:

    loss = mean(cos(c, d)^2)

It is 0 for orthogonal pairs and 1 for parallel or anti-parallel ones. A zero vector (e.g. the
embedding of a padding position) has cosine 0 with anything.
"""

from typing import Optional

import tensorflow as tf

from tfrs_llmrec.losses.precision import full_precision


def orthogonality_loss(cluster: tf.Tensor, individual: tf.Tensor,
                       sample_weight: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Scalar (weighted) mean of the squared row-wise cosine of `cluster` and `individual`.

    Args:
      cluster: [..., d] cluster embeddings c.
      individual: [..., d] individual embeddings d, same shape.
      sample_weight: [...] optional weights or boolean mask (weighted mean; all-zero weights give 0).
    """
    cluster = full_precision(cluster)
    individual = tf.cast(individual, cluster.dtype)
    cosines = tf.reduce_sum(tf.math.l2_normalize(cluster, axis=-1) * tf.math.l2_normalize(individual, axis=-1),
                            axis=-1)
    squared = tf.square(cosines)
    if sample_weight is None:
        return tf.reduce_mean(squared)
    weights = tf.cast(sample_weight, squared.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(squared * weights), tf.reduce_sum(weights))
