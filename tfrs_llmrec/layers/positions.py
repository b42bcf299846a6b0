"""Positions for a learnt positional-embedding table, checked against the table's size."""

import tensorflow as tf


def checked_positions(length: tf.Tensor, max_length: int) -> tf.Tensor:
    """`tf.range(length)`, after asserting `length <= max_length`.

    A lookup past the table fails on CPU with an index error that does not say which limit was
    crossed, and gives zeros on GPU. The range depends on the assertion so that, inside a
    tf.function, the check runs before any lookup reads the positions whether or not Grappler
    reorders the graph.
    """
    check = tf.debugging.assert_less_equal(length, max_length, message="sequence length exceeds max_length")
    with tf.control_dependencies([] if check is None else [check]):
        return tf.range(length)
