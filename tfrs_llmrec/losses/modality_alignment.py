"""EIMF's modality alignment task L_A: pulls the explicit (text) side and the implicit (ID) side of
the same user and of the same target item together, both sides trainable.

For pairs (x_b, y_b), b = 1..B, with cosines taken after L2 normalisation:

    CL(x, y)  = in-batch InfoNCE with x_b as query and y_b as positive, the other rows' y as
                negatives (rows with the same target item are not negatives of each other);
    COS(x, y) = mean_b (1 - cos(x_b, y_b));
    L_A = alpha * (CL(h_ex, h_im) + CL(t, e)) + beta * (COS(h_ex, h_im) + COS(t, e))

where h_ex / h_im are the user's explicit- and implicit-interest representations read out for the
target, and t / e the target item's projected text vector and its ID embedding. EIMF sets
2 * (alpha + beta) = 1. Unlike `cosine_alignment_loss`, no side is frozen.
"""

from typing import Optional

import tensorflow as tf

from tfrs_llmrec.losses.info_nce import info_nce_loss
from tfrs_llmrec.losses.precision import full_precision


def cosine_distance(x: tf.Tensor, y: tf.Tensor, sample_weight: Optional[tf.Tensor] = None) -> tf.Tensor:
    """(Weighted) mean of 1 - cos(x_b, y_b); a zero row has cosine 0."""
    x, y = full_precision(x), full_precision(y)
    cosines = tf.reduce_sum(tf.math.l2_normalize(x, axis=-1) * tf.math.l2_normalize(y, axis=-1), axis=-1)
    if sample_weight is None:
        return tf.reduce_mean(1.0 - cosines)
    weights = tf.cast(sample_weight, cosines.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum((1.0 - cosines) * weights), tf.reduce_sum(weights))


def modality_alignment_loss(explicit_user: tf.Tensor, implicit_user: tf.Tensor, target_text: tf.Tensor,
                            target_embedding: tf.Tensor, alpha: float, beta: float, temperature: float = 0.1,
                            target_ids: Optional[tf.Tensor] = None,
                            user_weight: Optional[tf.Tensor] = None) -> tf.Tensor:
    """L_A for a batch (see the module docstring).

    Args:
      explicit_user, implicit_user: [B, d] the user's two representations for its target.
      target_text, target_embedding: [B, d] the target item's text side and ID side.
      alpha, beta: weights of the contrastive and the cosine terms.
      temperature: of the contrastive terms.
      target_ids: [B] item IDs of the targets: two rows with the same target are not negatives.
      user_weight: [B] optional weights of the user terms (0 for a user without explicit interests).
    """
    user_cl = info_nce_loss(explicit_user, implicit_user, temperature=temperature, sample_weight=user_weight,
                            positive_ids=target_ids)
    item_cl = info_nce_loss(target_text, target_embedding, temperature=temperature, positive_ids=target_ids)
    user_cos = cosine_distance(explicit_user, implicit_user, user_weight)
    item_cos = cosine_distance(target_text, target_embedding)
    return alpha * (user_cl + item_cl) + beta * (user_cos + item_cos)
