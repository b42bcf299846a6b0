"""A stack of ReLU Dense layers ending in a linear projection."""

from typing import Optional, Sequence

import tensorflow as tf

from tfrs_llmrec.layers.initializers import glorot


class MLP(tf.keras.layers.Layer):
    """With `seed`, every kernel comes from a seeded Glorot initialiser (layer i uses seed + i), so
    the stack's initial weights do not depend on the global random state."""

    def __init__(self, hidden_dims: Sequence[int], output_dim: int, activation: str = "relu",
                 seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dims = [int(units) for units in hidden_dims]
        self.output_dim = int(output_dim)
        self.activation = activation
        self.seed = seed
        sizes = self.hidden_dims + [self.output_dim]
        self._layers = [
            tf.keras.layers.Dense(
                units, activation=activation if index < len(self.hidden_dims) else None,
                kernel_initializer=glorot(seed, index))
            for index, units in enumerate(sizes)]

    def call(self, inputs):
        outputs = inputs
        for layer in self._layers:
            outputs = layer(outputs)
        return outputs

    def get_config(self):
        return {**super().get_config(), "hidden_dims": self.hidden_dims, "output_dim": self.output_dim,
                "activation": self.activation, "seed": self.seed}
