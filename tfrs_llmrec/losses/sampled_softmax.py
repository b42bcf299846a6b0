"""Softmax over in-batch and globally sampled candidates, with logQ correction.

Row b's positive is candidate b. Candidates are the batch's positives followed by the shared
sampled negatives. With logQ correction each logit is reduced by log q(item), the item's
expected number of occurrences in the candidate set, so that popular items, which appear as
negatives more often, are not pushed down more than the full softmax would push them
(Yi et al., "Sampling-bias-corrected neural modeling", RecSys 2019). Accidental hits (a
candidate with the same item ID as the row's positive, other than the positive itself) are
removed from the row's denominator.

Interest-aware hard negatives (REMI, Xie et al., RecSys 2023): with `hardness` beta > 0 the
negatives are re-weighted as if drawn from q_b(j) proportional to exp(beta * s_bj) instead of the
sampler: negative j of row b enters the denominator with weight n_b * softmax_j(beta * s_bj) over the
row's n_b negatives (a Monte-Carlo estimate of the hard-negative distribution; the weights carry
no gradient). beta = 0 gives every negative weight 1, the plain sampled softmax.
"""

from typing import Optional

import tensorflow as tf

from tfrs_llmrec.losses.precision import full_precision

_MASKED_LOGIT = -1e9


def sampled_softmax_loss(query_embeddings: tf.Tensor, candidate_embeddings: tf.Tensor,
                         candidate_ids: tf.Tensor, positive_ids: tf.Tensor, temperature: float = 1.0,
                         candidate_log_q: Optional[tf.Tensor] = None,
                         remove_accidental_hits: bool = True,
                         sample_weight: Optional[tf.Tensor] = None, label_offset=0,
                         hardness: float = 0.0) -> tf.Tensor:
    """Mean cross-entropy of row b against candidate `label_offset` + b.

    Args:
      query_embeddings: [B, d].
      candidate_embeddings: [C, d] with C >= label_offset + B; rows label_offset.. are the positives
        (a replica's own rows inside the positives gathered from every replica).
      candidate_ids: [C] item IDs of the candidates.
      positive_ids: [B] item IDs of the positives (== candidate_ids[label_offset:label_offset + B]).
      temperature: logits are divided by it.
      candidate_log_q: [C] log expected occurrences of each candidate, or None.
      remove_accidental_hits: mask candidates that share the positive's ID.
      sample_weight: [B] optional per-row weights.
      label_offset: scalar position of row 0's positive among the candidates.
      hardness: REMI's beta (see the module docstring); 0 leaves the negatives unweighted.
    """
    query_embeddings = full_precision(query_embeddings)
    candidate_embeddings = tf.cast(candidate_embeddings, query_embeddings.dtype)
    logits = tf.matmul(query_embeddings, candidate_embeddings, transpose_b=True) / temperature
    if candidate_log_q is not None:
        logits -= tf.cast(candidate_log_q, logits.dtype)[tf.newaxis, :]
    batch_size = tf.shape(query_embeddings)[0]
    num_candidates = tf.shape(candidate_embeddings)[0]
    labels = tf.one_hot(tf.range(batch_size) + tf.cast(label_offset, tf.int32), num_candidates, dtype=logits.dtype)
    if remove_accidental_hits:
        same_item = tf.equal(positive_ids[:, tf.newaxis], candidate_ids[tf.newaxis, :])
        accidental = tf.logical_and(same_item, labels == 0)
        logits = tf.where(accidental, tf.constant(_MASKED_LOGIT, logits.dtype), logits)
    if hardness > 0.0:
        logits += tf.stop_gradient(_hard_negative_log_weights(logits, labels, hardness))
    losses = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    if sample_weight is None:
        return tf.reduce_mean(losses)
    weights = tf.cast(sample_weight, losses.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(losses * weights), tf.reduce_sum(weights))


def _hard_negative_log_weights(logits: tf.Tensor, labels: tf.Tensor, hardness: float) -> tf.Tensor:
    """log(n_b * softmax_j(hardness * logit_bj)) over each row's negatives; 0 at the positive and at
    masked (accidental-hit) candidates, which stay masked."""
    negative = tf.logical_and(labels == 0, logits > _MASKED_LOGIT / 2)
    scaled = tf.where(negative, hardness * logits, tf.constant(_MASKED_LOGIT, logits.dtype))
    count = tf.reduce_sum(tf.cast(negative, logits.dtype), axis=1, keepdims=True)
    log_weights = tf.nn.log_softmax(scaled, axis=1) + tf.math.log(tf.maximum(count, 1.0))
    return tf.where(negative, log_weights, tf.zeros_like(logits))
