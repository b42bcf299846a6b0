"""Softmax over in-batch and globally sampled candidates, with logQ correction.

Row b's positive is candidate b. Candidates are the batch's positives followed by the shared
sampled negatives. With logQ correction each logit is reduced by log q(item), the item's
expected number of occurrences in the candidate set, so that popular items, which appear as
negatives more often, are not pushed down more than the full softmax would push them
(Yi et al., "Sampling-bias-corrected neural modeling", RecSys 2019). Accidental hits (a
candidate with the same item ID as the row's positive, other than the positive itself) are
removed from the row's denominator.
"""

from typing import Optional

import tensorflow as tf

from tfrs_llmrec.losses.precision import full_precision

_MASKED_LOGIT = -1e9


def sampled_softmax_loss(query_embeddings: tf.Tensor, candidate_embeddings: tf.Tensor,
                         candidate_ids: tf.Tensor, positive_ids: tf.Tensor, temperature: float = 1.0,
                         candidate_log_q: Optional[tf.Tensor] = None,
                         remove_accidental_hits: bool = True,
                         sample_weight: Optional[tf.Tensor] = None, label_offset=0) -> tf.Tensor:
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
    losses = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    if sample_weight is None:
        return tf.reduce_mean(losses)
    weights = tf.cast(sample_weight, losses.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(losses * weights), tf.reduce_sum(weights))
