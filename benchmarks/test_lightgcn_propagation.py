"""LightGCN propagation with the sparse Â against a dense-matmul version, at dataset sizes.

Run with `make bench`. On an ML-100K-sized graph (943 users, 1,682 items, 100k random
interactions) both versions run K = 3 layers on d = 64 embeddings, their outputs are checked to
agree, and the ratio of their times is printed. On an Amazon-sized graph (50k users, 17k items,
390k interactions) only the sparse version runs: a dense Â would need (67k)^2 float32 values,
about 18 GB.
"""

import statistics
import time

import tfrs_llmrec  # noqa: F401  (Keras 2 before TensorFlow)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfrs_llmrec.layers.lightgcn import LightGCNPropagation, normalized_adjacency  # noqa: E402

DIM = 64
NUM_LAYERS = 3


def random_graph(num_users, num_items, num_edges, seed):
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    adjacency = normalized_adjacency(num_users, num_items, rng.integers(0, num_users, num_edges),
                                     rng.integers(0, num_items, num_edges))
    embeddings = tf.constant(rng.normal(scale=0.1, size=(num_users + num_items, DIM)), tf.float32)
    return adjacency, embeddings, time.perf_counter() - started


def median_seconds(function, repeats):
    function().numpy()  # trace and warm up
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        function().numpy()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def dense_propagation(dense_adjacency, embeddings):
    layer, total = embeddings, embeddings
    for _ in range(NUM_LAYERS):
        layer = tf.matmul(dense_adjacency, layer)
        total += layer
    return total / (NUM_LAYERS + 1)


@pytest.mark.slow
def test_sparse_propagation_against_dense_matmul():
    layer = LightGCNPropagation(NUM_LAYERS)

    adjacency, embeddings, build_s = random_graph(943, 1_682, 100_000, seed=0)
    dense_adjacency = tf.sparse.to_dense(adjacency)
    sparse_fn = tf.function(lambda: layer(embeddings, adjacency))
    dense_fn = tf.function(lambda: dense_propagation(dense_adjacency, embeddings))
    np.testing.assert_allclose(sparse_fn().numpy(), dense_fn().numpy(), rtol=1e-4, atol=1e-6)
    sparse_s = median_seconds(sparse_fn, repeats=20)
    dense_s = median_seconds(dense_fn, repeats=20)
    num_nodes = 943 + 1_682
    print(f"\nML-100K size ({num_nodes:,} nodes, {adjacency.values.shape[0] // 2:,} unique edges, d={DIM}, "
          f"K={NUM_LAYERS}; Â built in {build_s:.2f} s): sparse {sparse_s * 1e3:.2f} ms, dense "
          f"({num_nodes}^2 matrix, {num_nodes ** 2 * 4 / 1e6:.1f} MB) {dense_s * 1e3:.2f} ms; "
          f"time ratio sparse/dense = {sparse_s / dense_s:.2f}")

    num_users, num_items = 50_000, 17_000
    adjacency, embeddings, build_s = random_graph(num_users, num_items, 390_000, seed=1)
    sparse_fn = tf.function(lambda: layer(embeddings, adjacency))
    amazon_sparse_s = median_seconds(sparse_fn, repeats=5)
    num_nodes = num_users + num_items
    print(f"Amazon size ({num_nodes:,} nodes, {adjacency.values.shape[0] // 2:,} unique edges, d={DIM}, "
          f"K={NUM_LAYERS}; Â built in {build_s:.2f} s): sparse {amazon_sparse_s * 1e3:.2f} ms; dense skipped: "
          f"Â would need {num_nodes}^2 x 4 bytes = {num_nodes ** 2 * 4 / 1e9:.1f} GB")

    assert np.all(np.isfinite(sparse_fn().numpy()))
    assert amazon_sparse_s < 30.0  # loose sanity bound; the measured times are in the printout
