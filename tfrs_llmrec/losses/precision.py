"""Losses compute in at least float32: under mixed precision the embeddings arrive as float16."""

import tensorflow as tf


def full_precision(tensor) -> tf.Tensor:
    tensor = tf.convert_to_tensor(tensor)
    return tf.cast(tensor, tf.float32) if tensor.dtype in (tf.float16, tf.bfloat16) else tensor
