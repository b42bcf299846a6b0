import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.losses.asymmetric_transfer import asymmetric_transfer_loss

HEAD = np.array([[1.0, 0.0], [0.6, 0.8], [-1.0, 2.0]], np.float32)
TAIL = np.array([[2.0, 1.0], [0.0, 1.0], [-3.0, -1.0]], np.float32)


def info_nce_numpy(queries, keys, temperature, weights=None, not_negative=None):
    """Mean over rows of -log softmax(cos(q_i, k_j) / tau)_j at j = i, written out in NumPy."""
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    keys = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    logits = queries @ keys.T / temperature
    losses = []
    for i in range(len(logits)):
        negatives = [j for j in range(len(logits)) if j != i and (not_negative is None or not not_negative[i, j])]
        denominator = np.exp(logits[i, i]) + sum(np.exp(logits[i, j]) for j in negatives)
        losses.append(-np.log(np.exp(logits[i, i]) / denominator))
    weights = np.ones(len(losses)) if weights is None else np.asarray(weights, np.float64)
    return float(np.sum(np.array(losses) * weights) / np.sum(weights))


def test_matches_numpy_on_three_pairs():
    loss = asymmetric_transfer_loss(tf.constant(HEAD), tf.constant(TAIL), lambda_head=0.3, lambda_tail=0.7,
                                    temperature=0.5)
    expected = 0.3 * info_nce_numpy(HEAD, TAIL, 0.5) + 0.7 * info_nce_numpy(TAIL, HEAD, 0.5)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_each_term_moves_only_its_own_side():
    head, tail = tf.Variable(HEAD), tf.Variable(TAIL)

    def gradients(**weights):
        with tf.GradientTape() as tape:
            loss = asymmetric_transfer_loss(head, tail, temperature=0.5, **weights)
        return [None if gradient is None else tf.convert_to_tensor(gradient).numpy()
                for gradient in tape.gradient(loss, [head, tail])]

    head_term = gradients(lambda_head=1.0, lambda_tail=0.0)
    assert head_term[1] is None or not head_term[1].any()  # the lambda_head term sends nothing to the tail
    assert np.abs(head_term[0]).sum() > 0
    tail_term = gradients(lambda_head=0.0, lambda_tail=1.0)
    assert tail_term[0] is None or not tail_term[0].any()
    assert np.abs(tail_term[1]).sum() > 0
    both = gradients(lambda_head=0.2, lambda_tail=0.8)
    np.testing.assert_allclose(both[0], 0.2 * head_term[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(both[1], 0.8 * tail_term[1], rtol=1e-5, atol=1e-7)


def test_rows_without_a_pair_are_neither_queries_nor_negatives():
    garbage = np.array([[1e4, -3e3]], np.float32)
    head = np.concatenate([HEAD[:1], garbage, HEAD[1:]])
    tail = np.concatenate([TAIL[:1], -garbage, TAIL[1:]])
    expected = 0.1 * info_nce_numpy(HEAD, TAIL, 0.2) + 1.0 * info_nce_numpy(TAIL, HEAD, 0.2)
    for mask in (tf.constant([True, False, True, True]), tf.constant([1.0, 0.0, 1.0, 1.0])):
        loss = asymmetric_transfer_loss(tf.constant(head), tf.constant(tail), temperature=0.2, sample_weight=mask)
        assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_fractional_weights_give_a_weighted_mean():
    weights = [0.5, 2.0, 1.0]
    loss = asymmetric_transfer_loss(tf.constant(HEAD), tf.constant(TAIL), temperature=0.4,
                                    sample_weight=tf.constant(weights))
    expected = 0.1 * info_nce_numpy(HEAD, TAIL, 0.4, weights) + info_nce_numpy(TAIL, HEAD, 0.4, weights)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_no_valid_pair_gives_zero():
    loss = asymmetric_transfer_loss(tf.constant(HEAD), tf.constant(TAIL), sample_weight=tf.zeros([3]))
    assert float(loss) == 0.0


def test_rows_of_the_same_cluster_are_not_negatives():
    cluster_ids = np.array([7, 7, 3])
    not_negative = cluster_ids[:, None] == cluster_ids[None, :]
    loss = asymmetric_transfer_loss(tf.constant(HEAD), tf.constant(TAIL), lambda_head=0.5, lambda_tail=1.0,
                                    temperature=0.5, cluster_ids=tf.constant(cluster_ids))
    expected = (0.5 * info_nce_numpy(HEAD, TAIL, 0.5, not_negative=not_negative)
                + info_nce_numpy(TAIL, HEAD, 0.5, not_negative=not_negative))
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_works_in_a_tf_function_with_a_dynamic_batch_and_float16_inputs():
    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float16), tf.TensorSpec([None, 2], tf.float16),
                                  tf.TensorSpec([None], tf.bool)])
    def loss_of(head, tail, mask):
        return asymmetric_transfer_loss(head, tail, temperature=0.5, sample_weight=mask)

    loss = loss_of(tf.constant(HEAD, tf.float16), tf.constant(TAIL, tf.float16), tf.constant([True, True, False]))
    assert loss.dtype == tf.float32
    expected = 0.1 * info_nce_numpy(HEAD[:2], TAIL[:2], 0.5) + info_nce_numpy(TAIL[:2], HEAD[:2], 0.5)
    assert float(loss) == pytest.approx(expected, rel=1e-3)
