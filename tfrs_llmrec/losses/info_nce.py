"""InfoNCE over a positive and sampled (or in-batch) negatives, as AlphaRec trains its towers.

For row b with query q, positive p and negatives n_1..n_N (similarities s = <q, .>, cosine
when `normalize`):

    loss_b = -log( exp(s(q, p) / tau) / (exp(s(q, p) / tau) + sum_j exp(s(q, n_j) / tau)) )

which is the cross-entropy of a softmax over [positive, negatives] with the positive as label.
It is evaluated as softplus(logsumexp_j((s(q, n_j) - s(q, p)) / tau)), which cannot overflow at small
temperatures and keeps full precision when the loss is near 0. Negatives come in three
forms: per-row [B, N, d] (each row its own samples), shared [N, d] (one sample set for the whole
batch) or None (in-batch: every other row's positive is a negative, as in SimCLR/CLIP).
"""

from typing import Optional

import tensorflow as tf

from tfrs_llmrec.losses.precision import full_precision

_MASKED_LOGIT = -1e9


def info_nce_loss(query: tf.Tensor, positive: tf.Tensor, negatives: Optional[tf.Tensor] = None,
                  temperature: float = 0.15, normalize: bool = True,
                  sample_weight: Optional[tf.Tensor] = None,
                  positive_ids: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Mean InfoNCE of each query against its positive.

    Args:
      query: [B, d].
      positive: [B, d]; row b is the positive of query b.
      negatives: [B, N, d] per-row negatives, [N, d] negatives shared by every row, or None for
        in-batch negatives (the other rows' positives).
      temperature: similarities are divided by it (AlphaRec tunes it per dataset).
      normalize: L2-normalise all vectors first, so similarities are cosines.
      sample_weight: [B] optional per-row weights (weighted mean; all-zero weights give 0).
      positive_ids: [B] item IDs of the positives, only used with in-batch negatives: another
        row whose positive has the same ID is not a negative of this row.
    """
    query = full_precision(query)
    positive = tf.cast(positive, query.dtype)
    if negatives is not None:
        negatives = tf.cast(negatives, query.dtype)
    if normalize:
        query = tf.math.l2_normalize(query, axis=-1)
        positive = tf.math.l2_normalize(positive, axis=-1)
        if negatives is not None:
            negatives = tf.math.l2_normalize(negatives, axis=-1)
    temperature = tf.cast(tf.convert_to_tensor(temperature, dtype_hint=query.dtype), query.dtype)

    if negatives is None:
        # [B, B]; the diagonal holds the positives, everything else is a negative.
        logits = tf.matmul(query, positive, transpose_b=True) / temperature
        positive_logits = tf.linalg.diag_part(logits)
        not_negative = tf.eye(tf.shape(query)[0], dtype=tf.bool)
        if positive_ids is not None:
            not_negative = tf.logical_or(not_negative,
                                         tf.equal(positive_ids[:, tf.newaxis], positive_ids[tf.newaxis, :]))
        negative_logits = tf.where(not_negative, tf.constant(_MASKED_LOGIT, logits.dtype), logits)
    else:
        positive_logits = tf.reduce_sum(query * positive, axis=-1) / temperature  # [B]
        if negatives.shape.rank == 2:
            negative_logits = tf.matmul(query, negatives, transpose_b=True) / temperature  # [B, N]
        elif negatives.shape.rank == 3:
            negative_logits = tf.einsum("bd,bnd->bn", query, negatives) / temperature  # [B, N]
        else:
            raise ValueError(f"negatives must have shape [N, d] or [B, N, d], got {negatives.shape}")

    # -log(e^p / (e^p + sum_j e^n_j)) = log(1 + sum_j e^(n_j - p)) = softplus(logsumexp_j(n_j - p)):
    # exact for small losses, where logsumexp([p, n]) - p would cancel, and never overflows.
    losses = tf.math.softplus(tf.reduce_logsumexp(negative_logits - positive_logits[:, tf.newaxis], axis=1))
    if sample_weight is None:
        return tf.reduce_mean(losses)
    weights = tf.cast(sample_weight, losses.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(losses * weights), tf.reduce_sum(weights))
