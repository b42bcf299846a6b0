"""Seeded initialisers: with a seed, a layer's initial weights do not depend on the global random
state (seed + offset per weight, so no two weights of a model start equal); without one, Keras's
defaults."""

from typing import Optional, Union

import tensorflow as tf


def glorot(seed: Optional[int], offset: int = 0) -> Union[str, tf.keras.initializers.Initializer]:
    """Glorot-uniform kernels (Keras's Dense default)."""
    return "glorot_uniform" if seed is None else tf.keras.initializers.GlorotUniform(seed=seed + offset)


def embedding_uniform(seed: Optional[int], offset: int = 0) -> Union[str, tf.keras.initializers.Initializer]:
    """Uniform(-0.05, 0.05) embedding tables (Keras's Embedding default)."""
    return "uniform" if seed is None else tf.keras.initializers.RandomUniform(-0.05, 0.05, seed=seed + offset)


def embedding_table(kind: str, seed: Optional[int], offset: int = 0) -> tf.keras.initializers.Initializer:
    """MF-BPR's and LightGCN's tables (`model.embedding_init`): "normal" draws N(0, 0.1), "glorot"
    Glorot-normal (std about sqrt(2 / (rows + dim)), RecBole's Xavier)."""
    seed = None if seed is None else seed + offset
    if kind == "glorot":
        return tf.keras.initializers.GlorotNormal(seed=seed)
    return tf.keras.initializers.RandomNormal(stddev=0.1, seed=seed)
