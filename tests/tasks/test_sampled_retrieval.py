import math

import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.tasks import SampledRetrievalTask


def test_log_q_is_expected_count_in_candidate_set():
    # counts [1, 3] -> p_batch [0.25, 0.75]; uniform sampler over 2 items, 4 negatives, batch 2:
    # q(0) = 2 * 0.25 + 4 * 0.5 = 2.5, q(1) = 2 * 0.75 + 4 * 0.5 = 3.5.
    task = SampledRetrievalTask([1, 3], num_sampled_negatives=4)
    log_q = task.log_q(tf.constant([0, 1], tf.int64), tf.constant(2)).numpy()
    np.testing.assert_allclose(log_q, [math.log(2.5), math.log(3.5)], rtol=1e-6)


def test_popularity_sampler_follows_counts():
    task = SampledRetrievalTask([1, 0, 9], num_sampled_negatives=20000, negative_sampler="popularity")
    samples = task.sample_negatives(tf.constant([0, 1], tf.int64)).numpy()
    assert set(np.unique(samples)) <= {0, 2}
    assert np.mean(samples == 2) == pytest.approx(0.9, abs=0.02)


def test_uniform_sampler_covers_catalogue():
    samples = SampledRetrievalTask([1, 0, 9], num_sampled_negatives=3000).sample_negatives(
        tf.constant([0, 1], tf.int64)).numpy()
    assert set(np.unique(samples)) == {0, 1, 2}


def test_without_negatives_uses_in_batch_only():
    table = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    task = SampledRetrievalTask([1, 1], temperature=1.0, logq_correction=False)
    loss = task(table, tf.constant([0, 1], tf.int64), lambda ids: tf.gather(table, ids))
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)


def test_rejects_empty_counts():
    with pytest.raises(ValueError, match="item_train_counts"):
        SampledRetrievalTask([0, 0])


def test_same_seed_same_negatives_other_seed_others():
    task = SampledRetrievalTask(np.ones(1000), num_sampled_negatives=50)
    first, again, other = (task.sample_negatives(tf.constant(seed, tf.int64)).numpy()
                           for seed in ([3, 4], [3, 4], [3, 5]))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_sampled_negatives_need_a_seed():
    task = SampledRetrievalTask([1, 1], num_sampled_negatives=2)
    table = tf.eye(2)
    with pytest.raises(ValueError, match="seed"):
        task(table, tf.constant([0, 1], tf.int64), lambda ids: tf.gather(table, ids))
