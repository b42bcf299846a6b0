"""LightGCN propagation (`LightGCNPropagation`) against matmul baselines, forward and backward.

Run with `make bench`. Every version computes sum_k Â^k E / (K + 1) with K = 3 layers on d = 64
embeddings of a random graph; "forward+backward" is one tf.function step that propagates and
takes the gradient of a loss on the output with respect to E, as a training step does. The
versions are timed side by side (interleaved repeats, medians), after checking that their
outputs and gradients agree.

- ML-100K size (943 users, 1,682 items, 100k random interactions): ours against a dense Â matmul.
- Amazon size (50k users, 17k items, 390k interactions): ours against `tf.sparse.sparse_dense_matmul`
  (the previous implementation); a dense Â would need (67k)^2 float32 values, about 18 GB.

Propagation runs once per training step, so it also prints the propagation time per epoch, for
the training split's size (97,401 interactions at ML-100K, 288,626 at Amazon) over the batch size.
"""

import math
import statistics
import time

import tfrs_llmrec  # noqa: F401  (Keras 2 before TensorFlow)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfrs_llmrec.layers.lightgcn import LightGCNPropagation, normalized_adjacency  # noqa: E402

DIM = 64
NUM_LAYERS = 3
BATCH_SIZES = (1024, 4096)


def random_graph(num_users, num_items, num_edges, seed):
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    adjacency = normalized_adjacency(num_users, num_items, rng.integers(0, num_users, num_edges),
                                     rng.integers(0, num_items, num_edges))
    embeddings = tf.Variable(rng.normal(scale=0.1, size=(num_users + num_items, DIM)).astype(np.float32))
    return adjacency, embeddings, time.perf_counter() - started


def matmul_propagation(product, embeddings):
    """The LightGCN mean of the layers with `product(E) = Â E` and TensorFlow's own gradients."""
    layer = total = tf.convert_to_tensor(embeddings)
    for _ in range(NUM_LAYERS):
        layer = product(layer)
        total += layer
    return total / (NUM_LAYERS + 1)


def steps(propagate, embeddings):
    """tf.functions for the forward pass and for forward+backward (a loss that needs the output)."""
    @tf.function
    def forward_backward():
        with tf.GradientTape() as tape:
            outputs = propagate(embeddings)
            loss = 0.5 * tf.reduce_sum(tf.square(outputs))
        return outputs, tf.convert_to_tensor(tape.gradient(loss, embeddings))

    return tf.function(lambda: propagate(embeddings)), forward_backward


def compare(versions, embeddings, repeats):
    """{name: (forward s, forward+backward s)}, medians of interleaved runs, after an agreement check."""
    functions = {name: steps(propagate, embeddings) for name, propagate in versions.items()}
    results = [forward_backward() for _, forward_backward in functions.values()]  # traces too
    for name, (outputs, gradient) in zip(list(functions)[1:], results[1:]):
        np.testing.assert_allclose(outputs.numpy(), results[0][0].numpy(), rtol=1e-4, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(gradient.numpy(), results[0][1].numpy(), rtol=1e-4, atol=1e-6, err_msg=name)
    timings = {name: ([], []) for name in functions}
    for name, (forward, _) in functions.items():
        forward().numpy()  # trace
    for _ in range(repeats):
        for name, (forward, forward_backward) in functions.items():
            for timing, function in zip(timings[name], (forward, forward_backward)):
                started = time.perf_counter()
                for tensor in tf.nest.flatten(function()):
                    tensor.numpy()
                timing.append(time.perf_counter() - started)
    return {name: tuple(statistics.median(timing) for timing in pair) for name, pair in timings.items()}


def report(title, timings, train_interactions):
    (ours, (ours_forward, ours_step)), (other, (other_forward, other_step)) = timings.items()
    print(f"{title}\n"
          f"  forward:          {ours} {ours_forward * 1e3:8.2f} ms, {other} {other_forward * 1e3:8.2f} ms, "
          f"{other}/{ours} = {other_forward / ours_forward:.1f}x\n"
          f"  forward+backward: {ours} {ours_step * 1e3:8.2f} ms, {other} {other_step * 1e3:8.2f} ms, "
          f"{other}/{ours} = {other_step / ours_step:.1f}x")
    for batch_size in BATCH_SIZES:
        num_steps = math.ceil(train_interactions / batch_size)
        print(f"  per epoch, batch {batch_size} ({num_steps} steps of {train_interactions:,} train interactions): "
              f"{ours} {num_steps * ours_step:.1f} s, {other} {num_steps * other_step:.1f} s of propagation")


@pytest.mark.slow
def test_propagation_against_matmul_baselines():
    ours = LightGCNPropagation(NUM_LAYERS)

    adjacency, embeddings, build_s = random_graph(943, 1_682, 100_000, seed=0)
    dense_adjacency = tf.sparse.to_dense(adjacency)
    num_nodes = 943 + 1_682
    timings = compare({"ours": lambda e: ours(e, adjacency),
                       "dense": lambda e: matmul_propagation(lambda x: tf.matmul(dense_adjacency, x), e)},
                      embeddings, repeats=20)
    report(f"\nML-100K size ({num_nodes:,} nodes, {adjacency.values.shape[0] // 2:,} unique edges, d={DIM}, "
           f"K={NUM_LAYERS}; Â built in {build_s:.2f} s; dense Â {num_nodes}^2, "
           f"{num_nodes ** 2 * 4 / 1e6:.1f} MB):", timings, train_interactions=97_401)

    num_users, num_items = 50_000, 17_000
    adjacency, embeddings, build_s = random_graph(num_users, num_items, 390_000, seed=1)
    num_nodes = num_users + num_items
    started = time.perf_counter()
    ours.layer_outputs(embeddings, adjacency)  # first use: the fast path reads Â's structure once
    first_s = time.perf_counter() - started
    timings = compare({"ours": lambda e: ours(e, adjacency),
                       "sparse_dense_matmul": lambda e: matmul_propagation(
                           lambda x: tf.sparse.sparse_dense_matmul(adjacency, x), e)},
                      embeddings, repeats=5)
    report(f"Amazon size ({num_nodes:,} nodes, {adjacency.values.shape[0] // 2:,} unique edges, d={DIM}, "
           f"K={NUM_LAYERS}; Â built in {build_s:.2f} s, first (eager) propagation incl. its one-off read of Â "
           f"{first_s:.2f} s; dense skipped: Â would need {num_nodes ** 2 * 4 / 1e9:.1f} GB):",
           timings, train_interactions=288_626)

    assert timings["ours"][1] < 30.0  # loose sanity bound; the measured times are in the printout
