import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.layers.positions import checked_positions

TABLE = np.arange(12, dtype=np.float32).reshape(4, 3)


def test_positions_up_to_max_length_eagerly():
    np.testing.assert_array_equal(checked_positions(tf.constant(4), 4).numpy(), [0, 1, 2, 3])
    np.testing.assert_array_equal(checked_positions(tf.constant(0), 4).numpy(), [])
    with pytest.raises(tf.errors.InvalidArgumentError, match="exceeds max_length"):
        checked_positions(tf.constant(5), 4)


def test_in_a_tf_function_the_check_runs_before_a_lookup_past_the_table(grappler):
    table = tf.Variable(TABLE)

    @tf.function(input_signature=[tf.TensorSpec([None, None])])
    def lookup(sequence):
        return tf.gather(table, checked_positions(tf.shape(sequence)[1], 4))

    np.testing.assert_array_equal(lookup(tf.zeros([2, 3])).numpy(), TABLE[:3])
    # Without the dependency the gather may run first and fail with "indices[4] = 4 is not in [0, 4)".
    for _ in range(5):
        with pytest.raises(tf.errors.InvalidArgumentError, match="exceeds max_length"):
            lookup(tf.zeros([2, 6]))
