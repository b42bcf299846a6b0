"""Serving latency of multi-interest top-K (one index search per interest, merged) against a
single-vector query, on an Amazon-Games-sized catalogue, with BruteForce and with ScaNN.

Run with `make bench`, or `.venv/bin/python -m pytest -m slow -s benchmarks/test_multi_interest_serving.py`.
Each query tower is an untrained model's serving tower (`serving_query_tower()`), wrapped in the
export's `RetrievalModule` and called in-process through its `top_k` tf.function, the
`serving_default` signature (string IDs in, top-k string IDs and scores out, history excluded),
k = 100, max_history = 50:

- "single": `TwoTowerModel` (history pooling, no user ID), one [B, d] query, one search;
- "K=4": `MultiInterestModel` "comirec_sa" with K = 4 interests, [B, 4, d] queries: one search of
  k + max_history candidates per interest, merged by best score (`merge_interest_candidates`);
- "K=4 tower, 1 search": the same ComiRec-SA tower keeping its first interest only, a control that
  pays the multi-interest tower but searches once, so the K=4 / single ratio splits into the tower's
  share and the per-interest search's.

All three search one catalogue: 16,856 items (Amazon Video Games), d = 64, the ComiRec-SA model's
(L2-normalised, untrained) item embeddings; indexes as `workflow.stages.export` builds them,
`build_index(IndexSettings(kind, k + max_history))` with ScaNN's defaults for this size. Requests
carry random histories of string item IDs (about 6 real items, Amazon-like, padded with "" to 50
columns) and unknown user IDs; batches of 1 and of 32 users per request, made as tensors
beforehand. After a warm-up, rounds interleave the (model, index, batch) blocks in a rotating order
so that load from other processes hits all of them alike; p50 / p99 latency is over every request
of a block kind, QPS is requests/s over all of them, one request at a time (1 / mean latency; and
users/s = batch x requests/s), and each K=4 / single ratio is the median of the per-round ratios
of the blocks' median latencies (paired within a round). Only sanity is asserted on times; correctness is asserted for real: for a
few requests the K=4 BruteForce top-100 equals an exact NumPy top-100 (each item's best interest's
dot product, history items excluded).

A last diagnostic times `merge_interest_candidates` alone on K x (k + max_history) candidates with
int64 vocabulary indices (what the served graph merges: its repeat search compares every pair of
candidates) and with the string item IDs instead, which is why the graph looks the indices up first.
"""

import statistics
import time

import tfrs_llmrec  # noqa: F401  (Keras 2 before TensorFlow)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfrs_llmrec.config.schema import ModelConfig, TowerConfig  # noqa: E402
from tfrs_llmrec.data.spec import HISTORY, PAD_ITEM, USER_INDEX  # noqa: E402
from tfrs_llmrec.models.registry import ModelInputs, build_model  # noqa: E402
from tfrs_llmrec.serving.export import ITEM_IDS, SCORES, RetrievalModule, merge_interest_candidates  # noqa: E402
from tfrs_llmrec.serving.indexes import IndexSettings, build_index  # noqa: E402

NUM_ITEMS = 16_856
NUM_USERS = 50_546
DIM = 64
NUM_INTERESTS = 4
MAX_HISTORY = 50
MEAN_HISTORY = 6.0
K = 100
BATCH_SIZES = (1, 32)
INDEXES = ("brute_force", "scann")
REQUEST_POOL = 64  # distinct requests per batch size, cycled
WARMUP_CALLS = 5
# Requests per block by batch size: a K=4 batch of 32 takes ~0.3 s on 2 busy cores.
REQUESTS_PER_BLOCK = {1: 40, 32: 12}
ROUNDS = 8
MERGE_CALLS = 10  # per (batch size, ID type) and round of the merge diagnostic
MERGE_ROUNDS = 3
CHECK_REQUESTS = 16  # users checked against exact NumPy search (one batch)
SEED = 0

SINGLE, MULTI, CONTROL = "single", "K=4", "K=4 tower, 1 search"


class FirstInterest(tf.Module):
    """A multi-interest tower's first interest as a single-vector query [B, d]."""

    def __init__(self, tower):
        super().__init__()
        self.tower = tower

    def __call__(self, features):
        return self.tower(features)[:, 0]


def config_for(name: str) -> ModelConfig:
    config = ModelConfig(name=name, tower=TowerConfig(dim=DIM, use_user_id=False), temperature=0.05,
                         num_sampled_negatives=256)
    config.sequence.num_interests = NUM_INTERESTS
    return config


def towers():
    """The query towers by variant, and the catalogue's item embeddings [I, d]."""
    inputs = ModelInputs(num_users=NUM_USERS, item_train_counts=np.ones(NUM_ITEMS, np.int64), seed=SEED,
                         max_history=MAX_HISTORY)
    two_tower = build_model("two_tower", config_for("two_tower"), inputs)
    comirec = build_model("comirec_sa", config_for("comirec_sa"), inputs)
    item_embeddings = comirec.item_embeddings().astype(np.float32)
    multi = comirec.serving_query_tower()
    return {SINGLE: two_tower.serving_query_tower(), MULTI: multi, CONTROL: FirstInterest(multi)}, item_embeddings


def random_histories(rng, rows: int) -> np.ndarray:
    """[rows, MAX_HISTORY] item indices, most recent first, PAD_ITEM-padded, about MEAN_HISTORY real
    items (at least one) and no repeats within a row."""
    lengths = np.clip(rng.geometric(1.0 / MEAN_HISTORY, size=rows), 1, MAX_HISTORY)
    history = np.full((rows, MAX_HISTORY), PAD_ITEM, np.int64)
    for row, length in enumerate(lengths):
        history[row, :length] = rng.choice(NUM_ITEMS, size=length, replace=False)
    return history


def as_request(history: np.ndarray, item_ids: np.ndarray):
    """(user_id [B], history [B, MAX_HISTORY]) string tensors; unknown users, "" padding."""
    strings = np.where(history >= 0, item_ids[np.maximum(history, 0)], "")
    users = np.full(len(history), "unknown-user", object)
    return tf.constant(users.astype(str)), tf.constant(strings.astype(str))


def time_block(function, requests, start: int, count: int):
    """Per-request latencies (s) of `count` calls cycling over `requests` from `start`."""
    latencies = []
    for offset in range(count):
        users, history = requests[(start + offset) % len(requests)]
        began = time.perf_counter()
        outputs = function(users, history)
        outputs[ITEM_IDS].numpy()  # waits for the result, as a server answering would
        latencies.append(time.perf_counter() - began)
    return latencies


def check_against_exact_search(module: RetrievalModule, tower, item_embeddings, item_ids, rng):
    """The K=4 module's top-k equals NumPy's: items ranked by their best interest's dot product,
    history excluded, for CHECK_REQUESTS users."""
    history = random_histories(rng, CHECK_REQUESTS)
    history[0, :MAX_HISTORY] = rng.choice(NUM_ITEMS, size=MAX_HISTORY, replace=False)  # a full history too
    outputs = module.top_k(*as_request(history, item_ids))
    returned_ids = outputs[ITEM_IDS].numpy().astype(str)
    returned_scores = outputs[SCORES].numpy()
    queries = tower({USER_INDEX: tf.fill([CHECK_REQUESTS], tf.constant(PAD_ITEM, tf.int64)),
                     HISTORY: tf.constant(history)}).numpy()
    assert queries.shape == (CHECK_REQUESTS, NUM_INTERESTS, DIM)
    exact = np.einsum("bkd,nd->bkn", queries.astype(np.float64), item_embeddings.astype(np.float64)).max(axis=1)
    for row in range(CHECK_REQUESTS):
        seen = history[row][history[row] >= 0]
        scores = exact[row].copy()
        scores[seen] = -np.inf
        order = np.argsort(-scores, kind="stable")
        expected_ids = item_ids[order[:K]].astype(str)
        np.testing.assert_allclose(returned_scores[row], scores[order[:K]], rtol=0, atol=1e-5)
        if scores[order[K - 1]] - scores[order[K]] > 1e-5:  # no near-tie at the cut (float32 vs float64)
            assert set(returned_ids[row]) == set(expected_ids), row
        ties = np.abs(np.diff(scores[order[:K + 1]])) <= 1e-5
        if not ties.any():
            np.testing.assert_array_equal(returned_ids[row], expected_ids)
        assert len(set(returned_ids[row])) == K
        assert not set(returned_ids[row]) & set(item_ids[seen].astype(str))


def merge_cost(rng, item_ids):
    """Median ms of one `merge_interest_candidates` call on [B, K x (k + max_history)] candidates,
    with the int64 item indices the served graph merges and with string item IDs instead, by
    (batch size, ID type): what the all-pairs repeat search would cost on strings."""
    merge = tf.function(merge_interest_candidates)
    width = NUM_INTERESTS * (K + MAX_HISTORY)
    samples = {}
    for batch in BATCH_SIZES:
        indices = rng.integers(0, NUM_ITEMS, (batch, width))
        scores = tf.constant(rng.normal(size=(batch, width)).astype(np.float32))
        candidates = {"string": tf.constant(item_ids[indices].astype(str)), "int64": tf.constant(indices)}
        for id_type, ids in candidates.items():
            merge(scores, ids)[0].numpy()  # traces
            samples[batch, id_type] = []
        for _ in range(MERGE_ROUNDS):
            for id_type, ids in candidates.items():
                for _ in range(MERGE_CALLS):
                    began = time.perf_counter()
                    merge(scores, ids)[0].numpy()
                    samples[batch, id_type].append(time.perf_counter() - began)
    return {key: statistics.median(values) * 1e3 for key, values in samples.items()}


@pytest.mark.slow
def test_multi_interest_serving_latency_against_single_vector():
    started = time.perf_counter()
    rng = np.random.default_rng(SEED)
    item_ids = np.array([f"item-{index}" for index in range(NUM_ITEMS)], dtype=object)
    user_ids = [f"user-{index}" for index in range(NUM_USERS)]
    query_towers, item_embeddings = towers()

    modules, build_s = {}, {}
    for kind in INDEXES:
        index_started = time.perf_counter()
        index = build_index(IndexSettings(kind, K + MAX_HISTORY), item_embeddings, list(item_ids))
        build_s[kind] = time.perf_counter() - index_started
        for variant, tower in query_towers.items():
            modules[variant, kind] = RetrievalModule(tower, list(item_ids), user_ids, item_embeddings, MAX_HISTORY,
                                                     index, K)

    check_against_exact_search(modules[MULTI, "brute_force"], query_towers[MULTI], item_embeddings, item_ids, rng)

    requests = {batch: [as_request(random_histories(rng, batch), item_ids) for _ in range(REQUEST_POOL)]
                for batch in BATCH_SIZES}
    units = [(variant, kind, batch) for kind in INDEXES for batch in BATCH_SIZES for variant in query_towers]
    trace_s = {}
    for variant, kind, batch in units:
        warm_started = time.perf_counter()
        time_block(modules[variant, kind].top_k, requests[batch], 0, WARMUP_CALLS)  # traces once, warms up
        trace_s[variant, kind, batch] = time.perf_counter() - warm_started

    latencies = {unit: [] for unit in units}
    block_medians = {unit: [] for unit in units}
    for round_index in range(ROUNDS):
        shift = round_index % len(units)
        for unit in units[shift:] + units[:shift]:
            variant, kind, batch = unit
            count = REQUESTS_PER_BLOCK[batch]
            block = time_block(modules[variant, kind].top_k, requests[batch], round_index * count, count)
            latencies[unit].extend(block)
            block_medians[unit].append(statistics.median(block))

    def ratio(numerator, denominator) -> float:
        return statistics.median(a / b for a, b in zip(block_medians[numerator], block_medians[denominator]))

    resolved = IndexSettings("scann", K + MAX_HISTORY).resolved_scann(NUM_ITEMS)
    print(f"\n{NUM_ITEMS:,} items, d={DIM}, top-{K} (each search returns k + max_history = {K + MAX_HISTORY}), "
          f"K={NUM_INTERESTS} interests, histories of ~{MEAN_HISTORY:.0f} real items; ScaNN {resolved.num_leaves} "
          f"leaves, {resolved.num_leaves_to_search} searched, {resolved.num_reordering_candidates} re-scored; "
          f"index build s: " + ", ".join(f"{kind} {seconds:.1f}" for kind, seconds in build_s.items())
          + f"; {ROUNDS} interleaved rounds of blocks of " + ", ".join(
              f"{count} requests at batch {batch}" for batch, count in REQUESTS_PER_BLOCK.items()))
    print(f"{'index':<12}{'batch':>6}  {'query':<21}{'p50 ms':>8}{'p99 ms':>8}{'req/s':>9}{'users/s':>10}"
          f"{'/ single p50':>14}{'warm-up s':>11}")
    for kind in INDEXES:
        for batch in BATCH_SIZES:
            for variant in query_towers:
                unit = (variant, kind, batch)
                samples_ms = np.asarray(latencies[unit]) * 1e3
                requests_per_s = len(samples_ms) / (samples_ms.sum() / 1e3)  # one request at a time
                print(f"{kind:<12}{batch:>6}  {variant:<21}{np.percentile(samples_ms, 50):8.2f}"
                      f"{np.percentile(samples_ms, 99):8.2f}{requests_per_s:9.0f}{batch * requests_per_s:10,.0f}"
                      f"{ratio(unit, (SINGLE, kind, batch)):14.2f}{trace_s[unit]:11.1f}")
    merge_ms = merge_cost(rng, item_ids)
    print(f"merge_interest_candidates alone on {NUM_INTERESTS} x {K + MAX_HISTORY} candidates per user, median ms "
          f"(string item IDs / int64 indices, as served): " + "; ".join(
              f"batch {batch}: {merge_ms[batch, 'string']:.2f} / {merge_ms[batch, 'int64']:.2f}"
              for batch in BATCH_SIZES))
    print(f"K=4 BruteForce top-{K} matched exact NumPy search for {CHECK_REQUESTS} users; "
          f"benchmark took {time.perf_counter() - started:.0f} s")

    for unit in units:
        assert all(np.isfinite(seconds) and seconds > 0 for seconds in latencies[unit]), unit
