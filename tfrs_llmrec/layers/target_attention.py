"""DIN's local activation unit: attention of a candidate item over the user's behaviour sequence.

For a candidate embedding q and each behaviour embedding k_l, a small MLP reads
[k_l, q, k_l - q, k_l * q] and outputs a score a_l; the user's interest in this candidate is
sum_l w_l k_l. DIN keeps the raw scores as weights (`normalization="none"`): the pooled vector's
norm then grows with the number of relevant behaviours, which is how DIN keeps the intensity
of interest. `normalization="softmax"` gives the usual convex combination over the valid
positions instead.

Padding never leaks: padded behaviours are replaced by zeros before the MLP, left out of Dice's
batch statistics, and given weight 0, so anything stored there (even NaN) changes nothing, and
a row without any valid behaviour pools to zeros.
"""

from typing import Optional, Sequence

import tensorflow as tf

from tfrs_llmrec.layers.activations import Dice, activation_layer
from tfrs_llmrec.layers.initializers import glorot

NORMALIZATIONS = ("none", "softmax")
# Logit of a padded position before the softmax; finite, so an all-padding row gives no NaN.
_MASKED_SCORE = -1e9


class TargetAttention(tf.keras.layers.Layer):
    """Pools a behaviour sequence [B, L, d] into [B, d] by attention to a candidate [B, d].

    Called as `attention(query, keys, mask=None, training=None, return_weights=False)`:
      query: [B, d] candidate embedding.
      keys: [B, L, d] behaviour embeddings (the pooled values are the keys themselves).
      mask: [B, L] boolean, True at real behaviours; None means every position is valid.
      training: forwarded to Dice (batch statistics in training, moving averages otherwise).
      return_weights: also return the attention weights.
    Returns the pooled interest vector [B, d], or `(pooled, weights)` with weights [B, L] (0 at
    padded positions; with softmax they sum to 1 over the valid positions of each non-empty row).
    Outputs are in the layer's compute dtype (float16 under mixed_float16).

    Args:
      hidden_units: widths of the attention MLP's hidden layers (DIN: 80, 40); the MLP ends in a
        linear Dense(1) that gives the score.
      activation: "dice", "prelu" or any Keras activation name, after each hidden layer.
      normalization: "none" (DIN: weights are the raw scores) or "softmax" (masked softmax).
      seed: seeds the Glorot kernel initialisers (hidden layer i uses seed + i, the score layer
        seed + len(hidden_units)); biases start at 0.
    """

    def __init__(self, hidden_units: Sequence[int] = (80, 40), activation: str = "dice",
                 normalization: str = "none", seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        self.hidden_units = [int(units) for units in hidden_units]
        self.activation = activation
        self.normalization = normalization
        self.seed = seed
        self.hidden_layers = [tf.keras.layers.Dense(units, kernel_initializer=glorot(seed, index),
                                                    name=f"hidden_{index}")
                              for index, units in enumerate(self.hidden_units)]
        self.hidden_activations = [activation_layer(activation, input_rank=3, layer_name=f"activation_{index}")
                            for index in range(len(self.hidden_units))]
        self.score_layer = tf.keras.layers.Dense(1, kernel_initializer=glorot(seed, len(self.hidden_units)),
                                                 name="score")

    def call(self, query, keys, mask=None, training=None, return_weights=False):
        query = tf.cast(query, self.compute_dtype)
        keys = tf.cast(keys, self.compute_dtype)
        if query.shape[-1] is not None and keys.shape[-1] is not None and query.shape[-1] != keys.shape[-1]:
            raise ValueError(f"query and keys must have the same last dimension, got {query.shape} and {keys.shape}")
        mask = tf.ones(tf.shape(keys)[:-1], tf.bool) if mask is None else tf.cast(mask, tf.bool)
        keys = tf.where(mask[..., tf.newaxis], keys, tf.zeros_like(keys))

        queries = tf.broadcast_to(query[:, tf.newaxis, :], tf.shape(keys))
        hidden = tf.concat([keys, queries, keys - queries, keys * queries], axis=-1)  # [B, L, 4d]
        for dense, activation in zip(self.hidden_layers, self.hidden_activations):
            hidden = dense(hidden)
            hidden = (activation(hidden, training=training, mask=mask) if isinstance(activation, Dice)
                      else activation(hidden))
        scores = tf.squeeze(self.score_layer(hidden), axis=-1)  # [B, L]

        if self.normalization == "softmax":
            # float32: a float16 softmax loses the small weights of long sequences.
            scores = tf.where(mask, tf.cast(scores, tf.float32), _MASKED_SCORE)
            weights = tf.cast(tf.nn.softmax(scores, axis=-1), self.compute_dtype)
        else:
            weights = scores
        weights = tf.where(mask, weights, tf.zeros_like(weights))
        pooled = tf.einsum("bl,bld->bd", weights, keys)
        return (pooled, weights) if return_weights else pooled

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units, "activation": self.activation,
                "normalization": self.normalization, "seed": self.seed}
