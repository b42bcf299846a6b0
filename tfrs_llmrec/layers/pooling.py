"""Pooling over padded item histories."""

import tensorflow as tf


class MaskedMeanPooling(tf.keras.layers.Layer):
    """Mean of `embeddings[b, :length[b]]`; an empty history pools to zeros (not NaN)."""

    def call(self, embeddings, mask):
        weights = tf.cast(mask, embeddings.dtype)[..., tf.newaxis]
        total = tf.reduce_sum(embeddings * weights, axis=-2)
        count = tf.reduce_sum(weights, axis=-2)
        return tf.math.divide_no_nan(total, count)
