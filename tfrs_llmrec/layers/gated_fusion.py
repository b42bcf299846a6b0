"""Gates that fuse a collaborative (ID) and a semantic representation of the same item.

MotiR learns, per item, how much to trust each side: a popular item has a well-trained ID
embedding, a tail item has little interaction signal and should lean on its semantics. Both gates
read the two representations side by side and return the fused vector together with the weight
given to the semantic side, so training code can report the mean semantic weight per popularity
bucket (a working gate gives tail items the larger one).

- `ScalarGate`: alpha = sigmoid(w . [h_cf; h_sem] + b), fused = alpha * h_sem + (1 - alpha) * h_cf.
- `TwoWeightGate` (MotiR's appendix variant): a two-layer gate network produces two logits, a
  softmax turns them into (w_cf, w_sem), fused = w_cf * h_cf + w_sem * h_sem, and a linear
  projection maps the fused vector to `output_dim` (256 -> 128 in the appendix).

Why a softmax rather than two independent sigmoids: with weights that sum to 1 the fused vector
is a convex combination of the two inputs, so its scale stays that of the branches and w_sem is
a share that can be compared across items, buckets and with `ScalarGate`'s alpha. Two sigmoids
may both go to 0 (the item's representation vanishes) or both to 1 (its scale doubles), a
degree of freedom that the projection would have to undo and that makes w_sem meaningless on its
own. A softmax over two logits equals sigmoid(l_sem - l_cf), so this variant differs from the
scalar gate by its deeper gate network and the output projection, not by the form of the mix.

Both layers are called as `gate(h_cf, h_sem)` on tensors of the same shape [..., d] and return
`(fused, semantic_weight)` with `semantic_weight` of shape [...] (one weight per item). The gate
may read other versions of the two representations than it mixes, `gate(h_cf, h_sem,
gate_inputs=(g_cf, g_sem))`: MotiR mixes L2-normalised embeddings but lets the gate see the
unnormalised ones, whose norm tells how many updates an item's ID embedding has had.
"""

from typing import Optional

import tensorflow as tf
from tfrs_llmrec.layers.initializers import glorot


def _check_inputs(h_cf, h_sem, input_dim: Optional[int]):
    if h_cf.shape[-1] is not None and h_sem.shape[-1] is not None and h_cf.shape[-1] != h_sem.shape[-1]:
        raise ValueError(f"h_cf and h_sem must have the same last dimension, got {h_cf.shape} and {h_sem.shape}")
    if input_dim is not None and h_cf.shape[-1] is not None and h_cf.shape[-1] != input_dim:
        raise ValueError(f"expected inputs with last dimension {input_dim}, got {h_cf.shape}")


class ScalarGate(tf.keras.layers.Layer):
    """alpha = sigmoid(W [h_cf; h_sem] + b) per item; returns (alpha * h_sem + (1 - alpha) * h_cf, alpha).

    Args:
      input_dim: d of h_cf and h_sem. Optional; when given the gate's weights are created at once
        (e.g. to restore a checkpoint before any call) and other input sizes are rejected.
      seed: seeds the gate kernel's Glorot initialiser. The bias starts at 0 (alpha near 0.5).
    """

    def __init__(self, input_dim: Optional[int] = None, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.input_dim = None if input_dim is None else int(input_dim)
        self.seed = seed
        self.gate = tf.keras.layers.Dense(1, kernel_initializer=glorot(seed, 0), name="gate")
        if self.input_dim is not None:
            self.gate.build((None, 2 * self.input_dim))

    def call(self, h_cf, h_sem, gate_inputs=None):
        _check_inputs(h_cf, h_sem, self.input_dim)
        g_cf, g_sem = (h_cf, h_sem) if gate_inputs is None else gate_inputs
        alpha = tf.sigmoid(self.gate(tf.concat([g_cf, g_sem], axis=-1)))
        fused = alpha * h_sem + (1.0 - alpha) * h_cf
        return fused, tf.squeeze(alpha, axis=-1)

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "seed": self.seed}


class TwoWeightGate(tf.keras.layers.Layer):
    """(w_cf, w_sem) = softmax(gate_mlp([h_cf; h_sem])); returns (projection(w_cf h_cf + w_sem h_sem), w_sem).

    Args:
      output_dim: size of the projected output (128 in MotiR's appendix); None skips the
        projection and returns the fused vector at the input size.
      hidden_dim: width of the gate network's hidden layer.
      activation: activation of that hidden layer.
      input_dim: d of h_cf and h_sem (256 in the appendix). Optional; when given all weights are
        created at once and other input sizes are rejected.
      seed: seeds the Glorot initialisers (gate hidden layer, gate output, projection use seed,
        seed + 1, seed + 2).
    """

    def __init__(self, output_dim: Optional[int] = 128, hidden_dim: int = 64, activation: str = "relu",
                 input_dim: Optional[int] = None, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = None if output_dim is None else int(output_dim)
        self.hidden_dim = int(hidden_dim)
        self.activation = activation
        self.input_dim = None if input_dim is None else int(input_dim)
        self.seed = seed
        self.gate_hidden = tf.keras.layers.Dense(self.hidden_dim, activation=activation,
                                                 kernel_initializer=glorot(seed, 0), name="gate_hidden")
        self.gate_logits = tf.keras.layers.Dense(2, kernel_initializer=glorot(seed, 1), name="gate_logits")
        self.projection = (None if self.output_dim is None else
                           tf.keras.layers.Dense(self.output_dim, kernel_initializer=glorot(seed, 2),
                                                 name="projection"))
        if self.input_dim is not None:
            self.gate_hidden.build((None, 2 * self.input_dim))
            self.gate_logits.build((None, self.hidden_dim))
            if self.projection is not None:
                self.projection.build((None, self.input_dim))

    def weights_for(self, h_cf, h_sem):
        """[..., 2] gate weights, (w_cf, w_sem) along the last axis; they sum to 1."""
        _check_inputs(h_cf, h_sem, self.input_dim)
        return tf.nn.softmax(self.gate_logits(self.gate_hidden(tf.concat([h_cf, h_sem], axis=-1))), axis=-1)

    def call(self, h_cf, h_sem, gate_inputs=None):
        _check_inputs(h_cf, h_sem, self.input_dim)
        weights = self.weights_for(*((h_cf, h_sem) if gate_inputs is None else gate_inputs))
        fused = weights[..., 0:1] * h_cf + weights[..., 1:2] * h_sem
        if self.projection is not None:
            fused = self.projection(fused)
        return fused, weights[..., 1]

    def get_config(self):
        return {**super().get_config(), "output_dim": self.output_dim, "hidden_dim": self.hidden_dim,
                "activation": self.activation, "input_dim": self.input_dim, "seed": self.seed}
