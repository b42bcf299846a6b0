"""The CTR task: binary cross-entropy on the click logit, plus a rating-regression task for
multi-task heads on sources with ratings (MovieLens: like = rating >= threshold, and the rating)."""

from typing import Dict

import tensorflow as tf

from tfrs_llmrec.data.ctr_spec import RATING
from tfrs_llmrec.data.spec import LABEL

CLICK = "click"


class CtrTask:
    """loss = mean BCE(label, click logit) + rating_weight * mean (rating - predicted rating)^2,
    the second term only when the outputs hold a "rating" prediction."""

    def __init__(self, rating_weight: float = 0.0):
        self.rating_weight = float(rating_weight)

    def __call__(self, features: Dict[str, tf.Tensor], outputs: Dict[str, tf.Tensor]) -> tf.Tensor:
        logits = tf.cast(outputs[CLICK], tf.float32)
        labels = tf.cast(features[LABEL], tf.float32)
        loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
        if RATING in outputs and self.rating_weight:
            error = tf.cast(outputs[RATING], tf.float32) - tf.cast(features[RATING], tf.float32)
            loss += self.rating_weight * tf.reduce_mean(tf.square(error))
        return loss
