"""Optimizers and learning-rate schedules: decay to a final rate, warmup, scaling with the number
of replicas, and loss scaling for mixed precision."""

from __future__ import annotations

import math

import tensorflow as tf

from tfrs_llmrec.config.schema import TrainConfig


def global_batch_size(config: TrainConfig, num_replicas: int) -> int:
    """What one optimizer step sees: batch_size, or batch_size per replica (batch_scaling per_replica)."""
    return config.batch_size * (num_replicas if config.batch_scaling == "per_replica" else 1)


def learning_rate_factor(config: TrainConfig, num_replicas: int) -> float:
    """How much the global batch grew over batch_size, mapped by train.lr_scaling."""
    growth = global_batch_size(config, num_replicas) / config.batch_size
    return {"none": 1.0, "linear": growth, "sqrt": math.sqrt(growth)}[config.lr_scaling]


@tf.keras.utils.register_keras_serializable(package="tfrs_llmrec")
class WarmupExponentialDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
    """peak * min(1, (step + 1) / warmup_steps) * decay_rate ** step."""

    def __init__(self, peak: float, decay_rate: float = 1.0, warmup_steps: int = 0):
        self.peak, self.decay_rate, self.warmup_steps = float(peak), float(decay_rate), int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        rate = self.peak * tf.pow(self.decay_rate, step)
        if self.warmup_steps > 0:
            rate *= tf.minimum(1.0, (step + 1.0) / float(self.warmup_steps))
        return rate

    def get_config(self):
        return {"peak": self.peak, "decay_rate": self.decay_rate, "warmup_steps": self.warmup_steps}


def make_optimizer(config: TrainConfig, total_steps: int, num_replicas: int = 1) -> tf.keras.optimizers.Optimizer:
    factor = learning_rate_factor(config, num_replicas)
    decay_rate = 1.0
    if config.final_learning_rate is not None and total_steps > 0 and config.learning_rate > 0:
        # Per-step exponential decay that reaches final_learning_rate (scaled alike) at the last step.
        decay_rate = (config.final_learning_rate / config.learning_rate) ** (1.0 / total_steps)
    learning_rate = WarmupExponentialDecay(config.learning_rate * factor, decay_rate, config.warmup_steps)
    optimizer_class = {"adam": tf.keras.optimizers.Adam, "adagrad": tf.keras.optimizers.Adagrad}[config.optimizer]
    optimizer = optimizer_class(learning_rate, epsilon=config.optimizer_epsilon)
    if config.mixed_precision:
        optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def set_global_determinism(seed: int) -> None:
    """Same config, same numbers: seeds Python, NumPy and TF, asks TF for deterministic ops, and turns
    Grappler off for the process."""
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    # Op determinism does not cover Grappler's graph rewrites: with them on, the training step's
    # gradients differed in the last bits from one process to the next on CPU (AKT-Rec's and DIN's
    # on ML-100K, with one thread or two), and twin runs drifted apart from epoch 1. Turning off the
    # arithmetic, constant-folding or dependency pass alone did not remove it. Without Grappler every
    # process computed the same bits, and steps of DIN, AKT-Rec, SASRec and ComiRec-SA took as long.
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


def set_precision(mixed: bool) -> None:
    """mixed_float16 layers (float32 variables) or float32; call before building the model."""
    tf.keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
