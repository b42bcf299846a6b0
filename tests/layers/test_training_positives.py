import numpy as np
import tensorflow as tf

from tfrs_llmrec.layers.training_positives import TrainingPositives


def test_membership_of_every_pair_against_a_python_set():
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 50, 400), rng.integers(0, 70, 400)
    positives = TrainingPositives(users, items, num_items=70)
    known = set(zip(users.tolist(), items.tolist()))
    grid_users, grid_items = np.meshgrid(np.arange(50), np.arange(70), indexing="ij")
    found = positives.contains(tf.constant(grid_users), tf.constant(grid_items)).numpy()
    expected = np.array([[(u, i) in known for i in range(70)] for u in range(50)])
    assert found.shape == (50, 70)
    np.testing.assert_array_equal(found, expected)


def test_an_empty_split_contains_nothing():
    positives = TrainingPositives(np.zeros(0), np.zeros(0), num_items=5)
    assert not positives.contains(tf.constant([0, 3]), tf.constant([0, 4])).numpy().any()
