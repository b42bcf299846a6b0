"""Multi-gate Mixture-of-Experts (Ma et al., KDD 2018) for multi-task CTR heads (click, conversion, ...).

Every task reads the same experts but mixes them with its own softmax gate over the shared input,
so tasks that disagree can lean on different experts instead of fighting over one shared bottom:

    expert_k = f_k(x),    g_t = softmax(W_t x + b_t),    logit_t = tower_t(sum_k g_t[k] expert_k).

The gate weights are returned on request so training can report how each task uses the experts
(a gate stuck on one expert for every example is a collapsed mixture).
"""

from typing import Optional, Sequence

import tensorflow as tf

from tfrs_llmrec.layers.mlp import MLP
from tfrs_llmrec.layers.initializers import glorot


class MMoE(tf.keras.layers.Layer):
    """Shared experts, one softmax gate and one tower (ending in one logit) per task.

    Called as `mmoe(inputs, return_gate_weights=False)` on inputs [B, F]. Returns a list of
    `num_tasks` logit tensors of shape [B] (pre-sigmoid, one per task, in task order), or
    `(logits, gate_weights)` with gate_weights [B, num_tasks, num_experts] in float32, each
    task's row summing to 1. Logits are in the layer's compute dtype (float16 under
    mixed_float16; the losses cast them up).

    Args:
      num_experts: number of shared experts.
      expert_units: layer widths of each expert; every layer, the last included, applies
        `activation`, as MMoE's experts are ReLU layers. The experts' outputs have expert_units[-1]
        features.
      num_tasks: number of tasks (gates and towers).
      tower_units: hidden widths of each task tower; the tower ends in a linear Dense(1).
      activation: Keras activation name of the experts and the towers' hidden layers.
      seed: seeds every Glorot kernel initialiser; the experts, the gates and the towers take
        consecutive, non-overlapping seeds from `seed` on (the experts' layers first, then the
        gates, then the towers' layers), so no two experts start equal. Biases start at 0.
    """

    def __init__(self, num_experts: int, expert_units: Sequence[int], num_tasks: int,
                 tower_units: Sequence[int] = (), activation: str = "relu", seed: Optional[int] = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_experts = int(num_experts)
        self.expert_units = [int(units) for units in expert_units]
        self.num_tasks = int(num_tasks)
        self.tower_units = [int(units) for units in tower_units]
        self.activation = activation
        self.seed = seed
        if self.num_experts < 1 or self.num_tasks < 1 or not self.expert_units:
            raise ValueError("MMoE needs at least one expert, one task and one expert layer")

        expert_depth, tower_depth = len(self.expert_units), len(self.tower_units) + 1
        gates_offset = self.num_experts * expert_depth
        towers_offset = gates_offset + self.num_tasks
        self.experts = [MLP(self.expert_units[:-1], self.expert_units[-1], activation,
                            seed=self._seed(index * expert_depth), name=f"expert_{index}")
                        for index in range(self.num_experts)]
        self.expert_activation = tf.keras.activations.get(activation)
        self.gates = [tf.keras.layers.Dense(self.num_experts, kernel_initializer=self._initializer(gates_offset + task),
                                            name=f"gate_{task}")
                      for task in range(self.num_tasks)]
        self.towers = [MLP(self.tower_units, 1, activation, seed=self._seed(towers_offset + task * tower_depth),
                           name=f"tower_{task}")
                       for task in range(self.num_tasks)]

    def _seed(self, offset: int) -> Optional[int]:
        return None if self.seed is None else self.seed + offset

    def _initializer(self, offset: int):
        return glorot(self.seed, offset)

    def call(self, inputs, return_gate_weights=False):
        inputs = tf.cast(inputs, self.compute_dtype)
        experts = tf.stack([self.expert_activation(expert(inputs)) for expert in self.experts], axis=-2)  # [B, E, u]
        logits, gate_weights = [], []
        for gate, tower in zip(self.gates, self.towers):
            # Softmax in float32 so the reported gate weights sum to 1 at float32 precision.
            weights = tf.nn.softmax(tf.cast(gate(inputs), tf.float32), axis=-1)  # [B, E]
            mixed = tf.einsum("...e,...eu->...u", tf.cast(weights, self.compute_dtype), experts)
            logits.append(tf.squeeze(tower(mixed), axis=-1))
            gate_weights.append(weights)
        if return_gate_weights:
            return logits, tf.stack(gate_weights, axis=-2)
        return logits

    def get_config(self):
        return {**super().get_config(), "num_experts": self.num_experts, "expert_units": self.expert_units,
                "num_tasks": self.num_tasks, "tower_units": self.tower_units, "activation": self.activation,
                "seed": self.seed}
