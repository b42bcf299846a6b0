"""Activations for CTR models: DIN's data-adaptive Dice, and a factory that picks one by name.

Dice (Zhou et al., DIN) generalises PReLU: instead of switching between the two slopes at 0, it
switches smoothly around the mean of each unit's input,

    p = sigmoid((x - E[x]) / sqrt(Var[x] + epsilon)),    f(x) = p * x + (1 - p) * alpha * x,

with E and Var the statistics of the current batch in training and their moving averages in
inference (as batch normalisation does), and alpha a trainable slope per unit. Statistics are
taken per unit (the last axis) over every other axis, so a [B, L, units] input pools batch and
sequence; padded positions are left out of them when a mask is given.
"""

from typing import Optional

import tensorflow as tf


class Dice(tf.keras.layers.Layer):
    """f(x) = p * x + (1 - p) * alpha * x with p = sigmoid of x standardised per unit.

    Called as `dice(x, training=None, mask=None)` on x [..., units]; returns the same shape and
    dtype. `mask` (boolean, shape x.shape[:-1]) marks the valid positions: only those enter the
    batch statistics, and the outputs at the other positions are still computed (the caller masks
    them). With `training=True` the layer normalises with the batch statistics and moves the
    moving averages toward them; otherwise it uses the moving averages and updates nothing.

    Args:
      epsilon: added to the variance before the square root (DIN uses 1e-8).
      momentum: moving average = momentum * moving average + (1 - momentum) * batch statistic.

    Initial state is deterministic (alpha 0, moving mean 0, moving variance 1), so there is no seed.
    Statistics and the gate are computed in float32 under mixed precision, as batch normalisation
    does: float16 variances of large activations overflow. Under a multi-replica strategy each
    replica normalises with its own share of the batch (as unsynchronised batch normalisation) and
    the moving averages read as the mean over replicas.
    """

    def __init__(self, epsilon: float = 1e-8, momentum: float = 0.99, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)
        self.momentum = float(momentum)

    def build(self, input_shape):
        units = input_shape[-1]
        if units is None:
            raise ValueError(f"Dice needs a known last dimension, got input shape {input_shape}")
        self.alpha = self.add_weight(name="alpha", shape=(units,), initializer="zeros", trainable=True)
        # As batch normalisation keeps them: float32 even under mixed precision (no autocast), and under a
        # multi-replica strategy each replica updates its own copy and reads give their mean.
        statistics = dict(trainable=False, experimental_autocast=False,
                          synchronization=tf.VariableSynchronization.ON_READ, aggregation=tf.VariableAggregation.MEAN)
        self.moving_mean = self.add_weight(name="moving_mean", shape=(units,), initializer="zeros", **statistics)
        self.moving_variance = self.add_weight(name="moving_variance", shape=(units,), initializer="ones",
                                               **statistics)
        super().build(input_shape)

    def _batch_moments(self, inputs, mask):
        axes = list(range(inputs.shape.rank - 1))
        if mask is None:
            weights = tf.ones_like(inputs[..., :1])
        else:
            weights = tf.cast(mask, inputs.dtype)[..., tf.newaxis]
        count = tf.reduce_sum(weights, axis=axes)
        mean = tf.math.divide_no_nan(tf.reduce_sum(inputs * weights, axis=axes), count)
        variance = tf.math.divide_no_nan(tf.reduce_sum(tf.square(inputs - mean) * weights, axis=axes), count)
        return mean, variance, count[0]

    def call(self, inputs, training=None, mask=None):
        outputs_dtype = inputs.dtype
        inputs = tf.cast(inputs, tf.float32)
        if training:
            mean, variance, count = self._batch_moments(inputs, mask)
            # A batch without a valid position carries no statistics; leave the moving averages alone.
            has_data = count > 0
            self.moving_mean.assign(tf.where(
                has_data, self.momentum * self.moving_mean + (1.0 - self.momentum) * mean, self.moving_mean))
            self.moving_variance.assign(tf.where(
                has_data, self.momentum * self.moving_variance + (1.0 - self.momentum) * variance,
                self.moving_variance))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        probability = tf.sigmoid((inputs - mean) * tf.math.rsqrt(variance + self.epsilon))
        alpha = tf.cast(self.alpha, tf.float32)
        outputs = probability * inputs + (1.0 - probability) * alpha * inputs
        return tf.cast(outputs, outputs_dtype)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "momentum": self.momentum}


def activation_layer(name: str, input_rank: int = 2, layer_name: Optional[str] = None) -> tf.keras.layers.Layer:
    """A fresh activation layer: "dice" -> `Dice`, "prelu" -> `PReLU`, else `Activation(name)`.

    Args:
      name: "dice", "prelu" or any Keras activation name ("relu", "sigmoid", ...); case-insensitive
        for dice and prelu.
      input_rank: rank of the tensors the layer will see ([B, units] is 2, [B, L, units] is 3).
        PReLU shares its slopes over every axis but the last, so it learns one slope per unit
        rather than one per (position, unit) and accepts any sequence length.
      layer_name: optional Keras name of the returned layer.
    """
    kind = name.lower()
    if kind == "dice":
        return Dice(name=layer_name)
    if kind == "prelu":
        shared_axes = list(range(1, input_rank - 1)) or None
        return tf.keras.layers.PReLU(shared_axes=shared_axes, name=layer_name)
    return tf.keras.layers.Activation(name, name=layer_name)
