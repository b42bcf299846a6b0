"""Alignment of one embedding space onto another (MotiR's stage 2).

The source vectors (the trainable side) are pulled toward fixed target vectors: the target is
wrapped in stop_gradient, so only the source side learns. Two forms:

- temperature None: mean(1 - cos(source_b, target_b)), a pointwise pull of each row onto its
  own target;
- with a temperature: in-batch InfoNCE with source_b as query and target_b as its positive, the
  other rows' targets as negatives, so rows are also pushed away from each other's targets and
  the aligned space does not collapse.

`mean_cosine` is the matching metric; stage 2 stops once it reaches a configured threshold.
"""

from typing import Optional

import tensorflow as tf

from tfrs_llmrec.losses.info_nce import info_nce_loss
from tfrs_llmrec.losses.precision import full_precision


def _cosines(source: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Row-wise cosine similarity [B]; a zero vector has cosine 0 with anything (not NaN)."""
    target = tf.cast(target, source.dtype)
    return tf.reduce_sum(tf.math.l2_normalize(source, axis=-1) * tf.math.l2_normalize(target, axis=-1), axis=-1)


def cosine_alignment_loss(source: tf.Tensor, target: tf.Tensor, temperature: Optional[float] = None,
                          sample_weight: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Loss aligning `source` [B, d] to `target` [B, d]; no gradient reaches `target`.

    Args:
      source: [B, d] trainable vectors.
      target: [B, d] vectors to align to (row b is source b's target).
      temperature: None for mean(1 - cosine); a float for in-batch contrastive alignment
        (cosine similarities divided by it).
      sample_weight: [B] optional per-row weights (weighted mean; all-zero weights give 0).
    """
    source = full_precision(source)
    target = tf.stop_gradient(tf.cast(target, source.dtype))
    if temperature is not None:
        return info_nce_loss(source, target, None, temperature=temperature, normalize=True,
                             sample_weight=sample_weight)
    losses = 1.0 - _cosines(source, target)
    if sample_weight is None:
        return tf.reduce_mean(losses)
    weights = tf.cast(sample_weight, losses.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(losses * weights), tf.reduce_sum(weights))


def mean_cosine(source: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Mean row-wise cosine similarity of `source` and `target` ([B, d] each), in [-1, 1]."""
    return tf.reduce_mean(_cosines(tf.convert_to_tensor(source), target))
