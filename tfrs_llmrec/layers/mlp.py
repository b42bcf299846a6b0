"""A stack of ReLU Dense layers ending in a linear projection."""

from typing import Sequence

import tensorflow as tf


class MLP(tf.keras.layers.Layer):
    def __init__(self, hidden_dims: Sequence[int], output_dim: int, activation: str = "relu", **kwargs):
        super().__init__(**kwargs)
        self.hidden_dims = list(hidden_dims)
        self.output_dim = output_dim
        self.activation = activation
        self._layers = [tf.keras.layers.Dense(units, activation=activation) for units in self.hidden_dims]
        self._layers.append(tf.keras.layers.Dense(output_dim))

    def call(self, inputs):
        outputs = inputs
        for layer in self._layers:
            outputs = layer(outputs)
        return outputs

    def get_config(self):
        return {**super().get_config(), "hidden_dims": self.hidden_dims, "output_dim": self.output_dim,
                "activation": self.activation}
