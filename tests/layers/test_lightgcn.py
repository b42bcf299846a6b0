import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.layers.lightgcn import LightGCNPropagation, normalized_adjacency, split_user_item

# 2 users, 3 items; edges u0-i0, u0-i1, u1-i1, u1-i2. Nodes: 0 = u0, 1 = u1, 2 = i0, 3 = i1, 4 = i2.
USERS = [0, 0, 1, 1]
ITEMS = [0, 1, 1, 2]
# Degrees u0 2, u1 2, i0 1, i1 2, i2 1 -> Â[u, i] = 1 / sqrt(deg u * deg i):
# u0-i0 1/sqrt(2), u0-i1 1/2, u1-i1 1/2, u1-i2 1/sqrt(2), mirrored below the diagonal.
R = 1 / math.sqrt(2)
EXPECTED = np.array([
    [0, 0, R, 0.5, 0],
    [0, 0, 0, 0.5, R],
    [R, 0, 0, 0, 0],
    [0.5, 0.5, 0, 0, 0],
    [0, R, 0, 0, 0],
])


def dense(adjacency):
    return tf.sparse.to_dense(adjacency).numpy()


def test_normalized_adjacency_by_hand():
    adjacency = normalized_adjacency(2, 3, USERS, ITEMS)
    assert adjacency.dense_shape.numpy().tolist() == [5, 5]
    np.testing.assert_allclose(dense(adjacency), EXPECTED, rtol=1e-6)


def test_duplicate_edges_count_once():
    adjacency = normalized_adjacency(2, 3, USERS + [0, 1, 0], ITEMS + [0, 2, 0])
    assert adjacency.values.shape[0] == 8  # 4 edges, both directions
    np.testing.assert_allclose(dense(adjacency), EXPECTED, rtol=1e-6)


def test_isolated_nodes_stay_finite():
    # User 2 and item 3 have no interactions: their rows and columns are empty.
    adjacency = normalized_adjacency(3, 4, USERS, ITEMS)
    matrix = dense(adjacency)
    assert np.all(np.isfinite(matrix))
    assert not matrix[2].any() and not matrix[:, 2].any() and not matrix[6].any() and not matrix[:, 6].any()
    embeddings = tf.constant(np.random.default_rng(0).normal(size=(7, 4)), tf.float32)
    outputs = LightGCNPropagation(3)(embeddings, adjacency).numpy()
    assert np.all(np.isfinite(outputs))
    # Only layer 0 reaches an isolated node: its output is E / (K + 1).
    np.testing.assert_allclose(outputs[[2, 6]], embeddings.numpy()[[2, 6]] / 4, rtol=1e-6)


def test_one_layer_on_identity_embeddings_by_hand():
    # E = I, K = 1: (E + ÂE) / 2 = (I + Â) / 2.
    outputs = LightGCNPropagation(1)(tf.eye(5), normalized_adjacency(2, 3, USERS, ITEMS))
    np.testing.assert_allclose(outputs.numpy(), (np.eye(5) + EXPECTED) / 2, rtol=1e-6)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_propagation_matches_dense_numpy(num_layers):
    rng = np.random.default_rng(num_layers)
    num_users, num_items = 6, 9
    users, items = rng.integers(0, num_users, 25), rng.integers(0, num_items, 25)
    # Dense reference: A from the unique pairs, D from its row sums, Â = D^-1/2 A D^-1/2.
    adjacency = np.zeros((num_users + num_items,) * 2)
    adjacency[users, num_users + items] = 1.0
    adjacency[num_users + items, users] = 1.0
    degree = adjacency.sum(axis=1)
    scale = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1.0)), 0.0)
    normalized = scale[:, None] * adjacency * scale[None, :]
    embeddings = rng.normal(size=(num_users + num_items, 5))
    layers, layer = [embeddings], embeddings
    for _ in range(num_layers):
        layer = normalized @ layer
        layers.append(layer)
    expected = np.mean(layers, axis=0)

    sparse = normalized_adjacency(num_users, num_items, users, items)
    np.testing.assert_allclose(dense(sparse), normalized, rtol=1e-6, atol=1e-7)
    outputs = LightGCNPropagation(num_layers)(tf.constant(embeddings, tf.float32), sparse)
    np.testing.assert_allclose(outputs.numpy(), expected, rtol=1e-5, atol=1e-6)
    # Explicit weights: only the last layer.
    last = LightGCNPropagation(num_layers, layer_weights=[0.0] * num_layers + [1.0])(
        tf.constant(embeddings, tf.float32), sparse)
    np.testing.assert_allclose(last.numpy(), layers[-1], rtol=1e-5, atol=1e-6)


def test_zero_layers_is_identity():
    embeddings = tf.constant(np.random.default_rng(0).normal(size=(5, 3)), tf.float32)
    outputs = LightGCNPropagation(0)(embeddings, normalized_adjacency(2, 3, USERS, ITEMS))
    np.testing.assert_array_equal(outputs.numpy(), embeddings.numpy())


def test_gradients_flow_in_a_tf_function_and_config_round_trips():
    layer = LightGCNPropagation(2)
    adjacency = normalized_adjacency(2, 3, USERS, ITEMS)
    embeddings = tf.Variable(tf.ones([5, 2]))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(embeddings, adjacency))
        return tape.gradient(loss, embeddings)

    gradient = step().numpy()
    assert np.all(np.isfinite(gradient)) and np.all(gradient > 0)
    clone = LightGCNPropagation.from_config(layer.get_config())
    assert clone.num_layers == 2 and clone.layer_weights == "mean"


def test_split_user_item():
    users, items = split_user_item(tf.reshape(tf.range(10.0), [5, 2]), 2)
    assert users.shape == (2, 2) and items.shape == (3, 2)
    np.testing.assert_array_equal(items.numpy()[0], [4.0, 5.0])


def test_invalid_arguments():
    with pytest.raises(tf.errors.InvalidArgumentError):
        normalized_adjacency(2, 3, [0, 2], [0, 1])  # user 2 out of range
    with pytest.raises(tf.errors.InvalidArgumentError):
        normalized_adjacency(2, 3, [0], [3])  # item 3 out of range
    with pytest.raises(ValueError):
        LightGCNPropagation(2, layer_weights=[0.5, 0.5])
    with pytest.raises(ValueError):
        LightGCNPropagation(-1)


def random_graph(seed, num_users=7, num_items=11, num_edges=30):
    """(users, items, the dense numpy Â) of a random bipartite graph, built by hand."""
    rng = np.random.default_rng(seed)
    users, items = rng.integers(0, num_users, num_edges), rng.integers(0, num_items, num_edges)
    adjacency = np.zeros((num_users + num_items,) * 2)
    adjacency[users, num_users + items] = 1.0
    adjacency[num_users + items, users] = 1.0
    degree = adjacency.sum(axis=1)
    scale = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1.0)), 0.0)
    return users, items, scale[:, None] * adjacency * scale[None, :]


def numpy_propagation(matrix, embeddings, upstream, alphas):
    """sum_k alpha_k M^k E, and its gradient sum_k alpha_k (M^T)^k G for the loss <G, output>."""
    output, gradient, layer, back = 0.0, 0.0, embeddings, upstream
    for alpha in alphas:
        output, gradient = output + alpha * layer, gradient + alpha * back
        layer, back = matrix @ layer, matrix.T @ back
    return output, gradient


def values_and_gradient(layer, embeddings, adjacency, upstream):
    """The layer's output and d<upstream, output>/d embeddings, in a tf.function."""
    embeddings = tf.Variable(embeddings, dtype=tf.float32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            outputs = layer(embeddings, adjacency)
            loss = tf.reduce_sum(outputs * upstream)
        return outputs, tape.gradient(loss, embeddings)

    outputs, gradient = step()
    return outputs.numpy(), tf.convert_to_tensor(gradient).numpy()


@pytest.mark.parametrize("layer_weights", ["mean", [0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 0.0, 1.0]])
def test_fast_propagation_and_gradient_match_dense_numpy(layer_weights):
    num_users, num_items = 7, 11
    users, items, matrix = random_graph(seed=3, num_users=num_users, num_items=num_items)
    rng = np.random.default_rng(4)
    embeddings = rng.normal(size=(num_users + num_items, 5)).astype(np.float32)
    upstream = rng.normal(size=embeddings.shape).astype(np.float32)
    layer = LightGCNPropagation(3, layer_weights=layer_weights)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fast path takes normalized_adjacency without a warning
        adjacency = normalized_adjacency(num_users, num_items, users, items)
        outputs, gradient = values_and_gradient(layer, embeddings, adjacency, upstream)
    expected_outputs, expected_gradient = numpy_propagation(matrix, embeddings, upstream, layer.alphas)
    np.testing.assert_allclose(outputs, expected_outputs, rtol=0, atol=1e-5)
    np.testing.assert_allclose(gradient, expected_gradient, rtol=0, atol=1e-5)


def test_fast_layer_outputs_match_dense_numpy_in_any_entry_order():
    users, items, matrix = random_graph(seed=5)
    adjacency = normalized_adjacency(7, 11, users, items)
    # The same matrix with its entries shuffled: not row-major any more, still the fast path.
    order = np.random.default_rng(6).permutation(adjacency.values.shape[0])
    shuffled = tf.sparse.SparseTensor(tf.gather(adjacency.indices, order), tf.gather(adjacency.values, order),
                                      adjacency.dense_shape)
    embeddings = np.random.default_rng(7).normal(size=(18, 4)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for sparse in (adjacency, shuffled):
            layers = LightGCNPropagation(2).layer_outputs(tf.constant(embeddings), sparse)
            assert len(layers) == 3
            for k, layer in enumerate(layers):
                np.testing.assert_allclose(layer.numpy(), np.linalg.matrix_power(matrix, k) @ embeddings,
                                           rtol=0, atol=1e-5)


def test_one_layer_object_follows_a_new_adjacency():
    layer = LightGCNPropagation(2)
    embeddings = np.random.default_rng(8).normal(size=(18, 3)).astype(np.float32)
    for seed in (9, 10, 9):
        users, items, matrix = random_graph(seed)
        outputs = layer(tf.constant(embeddings), normalized_adjacency(7, 11, users, items)).numpy()
        np.testing.assert_allclose(outputs, numpy_propagation(matrix, embeddings, embeddings, layer.alphas)[0],
                                   rtol=0, atol=1e-5)


def test_other_adjacencies_fall_back_to_exact_sparse_matmul_with_a_warning():
    rng = np.random.default_rng(11)
    embeddings = rng.normal(size=(4, 3)).astype(np.float32)
    upstream = rng.normal(size=(4, 3)).astype(np.float32)
    # Not symmetric (a directed cycle), so the gradient needs M^T; and a symmetric one whose values
    # are not D^-1/2 A D^-1/2.
    cycle = np.roll(np.eye(4), 1, axis=1)
    weighted = np.array([[0, 2, 0, 0], [2, 0, 0.5, 0], [0, 0.5, 0, 0], [0, 0, 0, 1]])
    for matrix, reason in ((cycle, "not symmetric"), (weighted, "not D\\^-1/2 A D\\^-1/2")):
        layer = LightGCNPropagation(2, layer_weights=[0.2, 0.3, 0.5])
        sparse = tf.sparse.from_dense(matrix.astype(np.float32))
        with pytest.warns(UserWarning, match=reason):
            outputs, gradient = values_and_gradient(layer, embeddings, sparse, upstream)
        expected_outputs, expected_gradient = numpy_propagation(matrix, embeddings, upstream, layer.alphas)
        np.testing.assert_allclose(outputs, expected_outputs, rtol=0, atol=1e-5)
        np.testing.assert_allclose(gradient, expected_gradient, rtol=0, atol=1e-5)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per adjacency
            np.testing.assert_allclose(layer(tf.constant(embeddings), sparse).numpy(), expected_outputs,
                                       rtol=0, atol=1e-5)


def test_symbolic_adjacency_falls_back_with_a_warning():
    users, items, matrix = random_graph(seed=12)
    adjacency = normalized_adjacency(7, 11, users, items)
    embeddings = np.random.default_rng(13).normal(size=(18, 3)).astype(np.float32)
    layer = LightGCNPropagation(1)
    with pytest.warns(UserWarning, match="symbolic"):
        outputs = tf.function(lambda sparse: layer(tf.constant(embeddings), sparse))(adjacency)
    np.testing.assert_allclose(outputs.numpy(), (embeddings + matrix @ embeddings) / 2, rtol=0, atol=1e-5)


DETERMINISM_SCRIPT = """
import numpy as np
import tensorflow as tf
from tfrs_llmrec.layers.lightgcn import LightGCNPropagation, normalized_adjacency

tf.keras.utils.set_random_seed(0)
tf.config.experimental.enable_op_determinism()
rng = np.random.default_rng(0)
adjacency = normalized_adjacency(300, 200, rng.integers(0, 300, 5000), rng.integers(0, 200, 5000))
embeddings = tf.Variable(rng.normal(size=(500, 16)).astype(np.float32))
upstream = tf.constant(rng.normal(size=(500, 16)).astype(np.float32))

def run():
    layer = LightGCNPropagation(3)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            outputs = layer(embeddings, adjacency)
            loss = tf.reduce_sum(tf.square(outputs) * upstream)
        return outputs, tape.gradient(loss, embeddings)

    outputs, gradient = step()
    last_layer = layer.layer_outputs(embeddings, adjacency)[-1]
    return outputs.numpy(), tf.convert_to_tensor(gradient).numpy(), last_layer.numpy()

first, second = run(), run()
assert all(np.array_equal(a, b) for a, b in zip(first, second)), "not bit-identical"
print("DETERMINISTIC")
"""


def test_bit_identical_under_op_determinism():
    # A subprocess, because op determinism cannot be switched off again in this one.
    result = subprocess.run([sys.executable, "-c", "import tfrs_llmrec\n" + DETERMINISM_SCRIPT],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "DETERMINISTIC" in result.stdout, result.stderr[-3000:]
