"""ScaNN against BruteForce on a 1M-item catalogue, and the index defaults chosen by catalogue size.

Run with `make bench`. Both indexes are the TFRS layers `serving.indexes.build_index` returns,
called eagerly on batches of query embeddings.

Catalogue (seeded, d = 64, not L2-normalised: dot products, as the two-tower scores): 50 topic
directions, 3,000 clusters scattered around them and 1M items scattered around the clusters, with
Zipf-like cluster sizes (from ~50k items down to ~60), so items are clustered at two
scales rather than uniform noise. Each query is the mean of 1-3 items drawn uniformly (so the
popular clusters are asked about more often; several items stand for users with several
interests) plus a little noise: it lies near the items, or between the clusters of its interests.

For each setting: recall@10 against exact top-10 (numpy matmul in chunks); queries/s through the
layer on batches of 256 and the median latency of one-query batches, each beside BruteForce's,
timed interleaved in the same run so a busy machine slows both; index build time; and the index
size, the bytes of the layer's variables (what a SavedModel stores: for ScaNN the 4-bit codes, the
partitioner and, for reordering, the float embeddings; for BruteForce the embeddings), identifiers
included in both. The rows vary one setting at a time around the defaults; a last block evaluates
the defaults on random 20k and 100k sub-catalogues and with K = 100 (the export's top_k), and the
test fails unless the defaults reach recall@10 >= 0.95 at >= 10x BruteForce's queries/s at 1M items.
"""

import gc
import statistics
import time
from dataclasses import dataclass

import tfrs_llmrec  # noqa: F401  (Keras 2 before TensorFlow)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfrs_llmrec.serving.indexes import IndexSettings, build_index, top_k_recall  # noqa: E402

NUM_ITEMS = 1_000_000
DIM = 64
NUM_TOPICS = 50
NUM_CLUSTERS = 3000
NUM_QUERIES = 2000
K = 10
BATCH = 256
BRUTE_FORCE_EVERY = 4  # BruteForce costs the same on every batch, so a quarter of them time it
LATENCY_QUERIES = 200
ROUNDS = 5
TARGET_RECALL, TARGET_SPEED_UP = 0.95, 10.0


def clustered_catalogue(rng):
    """Items around clusters around topics, cluster sizes Zipf-like (exponent 0.8) over 3,000 ranks."""
    topics = rng.normal(size=(NUM_TOPICS, DIM)) / np.sqrt(DIM)
    centres = topics[rng.integers(0, NUM_TOPICS, NUM_CLUSTERS)]
    centres += rng.normal(scale=0.7, size=centres.shape) / np.sqrt(DIM)
    popularity = 1.0 / np.arange(1, NUM_CLUSTERS + 1) ** 0.8
    sizes = rng.multinomial(NUM_ITEMS, popularity / popularity.sum())
    items = np.repeat(centres, sizes, axis=0) + rng.normal(scale=0.5, size=(NUM_ITEMS, DIM)) / np.sqrt(DIM)
    return items[rng.permutation(NUM_ITEMS)].astype(np.float32), sizes


def user_queries(items, rng):
    """The mean of 1-3 uniformly drawn items each, plus noise."""
    picked = items[rng.integers(0, len(items), (NUM_QUERIES, 3))]
    counts = rng.integers(1, 4, NUM_QUERIES)
    kept = np.arange(3)[None, :, None] < counts[:, None, None]
    mean = (picked * kept).sum(axis=1) / counts[:, None]
    return (mean + rng.normal(scale=0.3, size=mean.shape) / np.sqrt(DIM)).astype(np.float32)


def exact_top_k(queries, items, k, chunk=250):
    """Row indices of the exact top-k by dot product, best first."""
    found = []
    for start in range(0, len(queries), chunk):
        scores = queries[start:start + chunk] @ items.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        found.append(np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1), 1))
    return np.concatenate(found)


def index_bytes(index):
    return sum(sum(len(text) for text in variable.numpy().ravel()) if variable.dtype == tf.string
               else variable.numpy().nbytes for variable in index.variables)


def timed_search(index, queries):
    """(seconds, row indices found) for one call of `index`."""
    started = time.perf_counter()
    found = index(tf.constant(queries))[1].numpy()
    return time.perf_counter() - started, found.astype(np.int64)


def interleaved_round(index, brute_force, queries):
    """All queries through `index` in batches of BATCH, and every BRUTE_FORCE_EVERY-th batch through
    `brute_force` right after it: (index q/s, BruteForce q/s, indices found). Alternating batch by
    batch, both see the same load when other processes share the CPUs."""
    seconds = brute_force_seconds = brute_force_queries = 0
    found = []
    for number, start in enumerate(range(0, len(queries), BATCH)):
        batch = queries[start:start + BATCH]
        elapsed, batch_found = timed_search(index, batch)
        seconds += elapsed
        found.append(batch_found)
        if number % BRUTE_FORCE_EVERY == 0:
            brute_force_seconds += timed_search(brute_force, batch)[0]
            brute_force_queries += len(batch)
    return len(queries) / seconds, brute_force_queries / brute_force_seconds, np.concatenate(found)


def interleaved_latencies(index, brute_force, queries):
    """Median seconds of one-query calls, alternating between `index` and `brute_force`."""
    times, brute_force_times = [], []
    for query in queries[:LATENCY_QUERIES]:
        times.append(timed_search(index, query[None, :])[0])
        brute_force_times.append(timed_search(brute_force, query[None, :])[0])
    return statistics.median(times), statistics.median(brute_force_times)


@dataclass
class Row:
    label: str
    items: int
    k: int
    parameters: tuple
    recall: float
    qps: float
    brute_force_qps: float
    speed_up: float  # median over rounds of the ratio, each round's two timed together
    latency_s: float
    brute_force_latency_s: float
    build_s: float
    size_bytes: int
    brute_force_size_bytes: int


def measure(label, settings, items, item_ids, queries, exact, brute_force):
    """Builds the index of `settings` and times it beside `brute_force`, interleaved."""
    gc.collect()
    started = time.perf_counter()
    index = build_index(settings, items, item_ids)
    build_s = time.perf_counter() - started
    index(tf.constant(queries[:BATCH]))
    rounds = [interleaved_round(index, brute_force, queries) for _ in range(ROUNDS)]
    found = rounds[-1][2]
    latency, brute_force_latency = interleaved_latencies(index, brute_force, queries)
    parameters = settings.resolved_scann(len(items))
    row = Row(label, len(items), settings.k,
              (parameters.num_leaves, parameters.num_leaves_to_search, parameters.num_reordering_candidates,
               parameters.dimensions_per_block),
              top_k_recall(found, exact[:, :found.shape[1]]), statistics.median(qps for qps, _, _ in rounds),
              statistics.median(qps for _, qps, _ in rounds), statistics.median(qps / bf for qps, bf, _ in rounds),
              latency, brute_force_latency, build_s, index_bytes(index), index_bytes(brute_force))
    print(f"{row.label:<30} {row.items:>9,} {row.k:>4} {str(row.parameters):>22} {row.recall:>7.4f} "
          f"{row.qps:>9,.0f} {row.brute_force_qps:>7,.0f} {row.speed_up:>7.1f}x "
          f"{1e3 * row.latency_s:>6.2f} {1e3 * row.brute_force_latency_s:>6.2f} "
          f"{row.brute_force_latency_s / row.latency_s:>6.1f}x {row.build_s:>6.1f} "
          f"{row.size_bytes / 1e6:>7.0f} {row.size_bytes / row.brute_force_size_bytes:>5.2f}", flush=True)
    return row


def brute_force_baseline(items, item_ids, queries, exact, k):
    started = time.perf_counter()
    index = build_index(IndexSettings("brute_force", k), items, item_ids)
    build_s = time.perf_counter() - started
    _, found = timed_search(index, queries[:BATCH])
    print(f"BruteForce over {len(items):,} items, k={k}: built in {build_s:.1f} s, "
          f"{index_bytes(index) / 1e6:.0f} MB, recall@{k} against numpy {top_k_recall(found, exact[:BATCH, :k]):.4f}")
    return index


@pytest.mark.slow
@pytest.mark.timeout(7200)
def test_scann_defaults_at_catalogue_scale():
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    items, sizes = clustered_catalogue(rng)
    queries = user_queries(items, rng)
    item_ids = [str(row) for row in range(NUM_ITEMS)]
    exact = exact_top_k(queries, items, 100)
    print(f"\ncatalogue: {NUM_ITEMS:,} items, d={DIM}, {NUM_CLUSTERS} clusters of {sizes.min()}-{sizes.max()} items; "
          f"{NUM_QUERIES} queries; exact top-100 in {time.perf_counter() - started:.0f} s")
    print(f"{'setting':<30} {'items':>9} {'K':>4} {'(leaves,search,reord,dpb)':>22} {'recall':>7} {'ScaNN q/s':>9} "
          f"{'BF q/s':>7} {'speed-up':>8} {'ms/q':>6} {'BF ms/q':>6} {'lat.x':>7} {'build':>6} {'MB':>7} {'/BF':>5}")
    brute_force = brute_force_baseline(items, item_ids, queries, exact, K)

    def scann(**overrides):
        return IndexSettings("scann", K, **overrides)

    for label, settings in [
        ("previous rule (1/5, reorder 100)", scann(num_leaves_to_search=200, num_reordering_candidates=100)),
        ("search 20 leaves", scann(num_leaves_to_search=20)),
        ("search 40 leaves", scann(num_leaves_to_search=40)),
        ("search 150 leaves", scann(num_leaves_to_search=150)),
        ("reorder 100", scann(num_reordering_candidates=100)),
        ("reorder 500", scann(num_reordering_candidates=500)),
        ("1 dim/block, search 40", scann(num_leaves_to_search=40, dimensions_per_block=1)),
        ("1 dim/block", scann(dimensions_per_block=1)),
        ("500 leaves, search 54", scann(num_leaves=500, num_leaves_to_search=54)),
        ("2000 leaves, search 108", scann(num_leaves=2000, num_leaves_to_search=108)),
    ]:
        measure(label, settings, items, item_ids, queries, exact, brute_force)
    defaults = measure("DEFAULTS", scann(), items, item_ids, queries, exact, brute_force)

    print("defaults elsewhere:")
    brute_force_100 = brute_force_baseline(items, item_ids, queries, exact, 100)
    measure("DEFAULTS, K=100 (recall@100)", IndexSettings("scann", 100), items, item_ids, queries, exact,
            brute_force_100)
    del brute_force, brute_force_100
    for size in (20_000, 100_000):
        subset = np.sort(rng.choice(NUM_ITEMS, size, replace=False))
        sub_items, sub_ids = items[subset], [item_ids[row] for row in subset]
        sub_exact = subset[exact_top_k(queries, sub_items, K)]
        sub_brute_force = build_index(IndexSettings("brute_force", K), sub_items, sub_ids)
        measure(f"DEFAULTS, {size // 1000}k sub-catalogue", IndexSettings("scann", K), sub_items, sub_ids, queries,
                sub_exact, sub_brute_force)
    print(f"benchmark wall time {time.perf_counter() - started:.0f} s")

    assert defaults.recall >= TARGET_RECALL, defaults
    assert defaults.speed_up >= TARGET_SPEED_UP, defaults
