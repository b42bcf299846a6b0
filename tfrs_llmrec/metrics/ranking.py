"""Full-ranking metrics (HR, Recall, NDCG at K; MRR) computed from the ranks of target items.

Rank convention. A user is scored against the whole catalogue. Their excluded items (normally
the training items) never count. For a user with target set T, target t gets

    rank(t) = 1 + #{j not in T, not excluded : s_j >= s_t}
                + #{t' in T ordered before t by (score descending, item index ascending)}.

Ties with non-target items count against the target (pessimistic), so a model that gives every
item the same score earns nothing rather than an optimistic rank 1. Among the user's own
targets ties are broken by item index, so a user's target ranks are distinct: 1, 2, ... if they
fill the top. An item that is both a target and excluded is a target (the exclusion is for
items the user is not being tested on).

Per user, for every K and with hits@K = #{t in T : rank(t) <= K}:

    hr@K     = 1 if hits@K > 0 else 0                    (a.k.a. Hit@K)
    recall@K = hits@K / |T|
    ndcg@K   = sum_{t: rank(t) <= K} 1 / log2(rank(t) + 1)  /  sum_{i=1}^{min(|T|, K)} 1 / log2(i + 1)
    mrr      = 1 / min_t rank(t)                          (no cutoff)

A user with no targets has NaN metrics; averages are taken over users who have targets.

Two implementations share this convention: a NumPy reference on one user's full score vector
(`ranks_from_scores`), and the batched TensorFlow path the evaluator uses
(`score_targets_against_catalogue` + `ranks_from_counts`), which scores a batch of users against
the catalogue one item chunk at a time and only keeps, per target, the number of non-target
items scoring at or above it. Memory is O(batch_size * item_chunk) whatever the catalogue size,
and no top-k over the catalogue is needed.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

# Up to this many targets in a user batch, counting compares each target's score with the chunk
# directly (one [B, C] comparison per target); above it a per-row binary search over the sorted
# target scores is cheaper (one search per item, whatever the number of targets).
_MAX_TARGETS_FOR_DIRECT_COMPARISON = 8


def metric_names(ks: Sequence[int]) -> List[str]:
    """Names in the order the metrics are reported: per K recall, ndcg, hr; then mrr."""
    names = []
    for k in normalize_ks(ks):
        names += [f"recall@{k}", f"ndcg@{k}", f"hr@{k}"]
    return names + ["mrr"]


def normalize_ks(ks: Sequence[int]) -> Tuple[int, ...]:
    """Sorted distinct cutoffs; raises on an empty list or a cutoff below 1."""
    values = [int(k) for k in ks]
    if not values or any(k < 1 for k in values) or any(int(k) != k for k in ks):
        raise ValueError(f"ks must be a non-empty list of positive integers, got {list(ks)}")
    return tuple(sorted(set(values)))


# --------------------------------------------------------------------------------------------
# NumPy reference
# --------------------------------------------------------------------------------------------

def ranks_from_scores(scores, targets, excluded=None) -> np.ndarray:
    """Ranks of one user's targets under the module's convention; aligned with `targets`.

    Args:
      scores: [N] scores over the whole catalogue (finite).
      targets: distinct item indices in [0, N).
      excluded: item indices in [0, N) that never count (e.g. training items); may be None.
    """
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(f"scores must be one-dimensional, got shape {scores.shape}")
    num_items = scores.shape[0]
    targets = _item_indices(targets, num_items, "targets")
    excluded = _item_indices([] if excluded is None else excluded, num_items, "excluded")
    if np.unique(targets).size != targets.size:
        raise ValueError("targets must be distinct")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    is_candidate = np.ones(num_items, dtype=bool)
    is_candidate[excluded] = False
    is_candidate[targets] = False
    candidate_scores = scores[is_candidate]
    target_scores = scores[targets]
    at_or_above = (candidate_scores[np.newaxis, :] >= target_scores[:, np.newaxis]).sum(axis=1)
    before = np.empty(targets.size, dtype=np.int64)
    before[np.lexsort((targets, -target_scores))] = np.arange(targets.size)
    return 1 + at_or_above.astype(np.int64) + before


def metrics_from_ranks(ranks_per_user: Sequence, ks: Sequence[int]) -> Dict[str, np.ndarray]:
    """Per-user metrics from a list holding each user's target ranks (|T| = len of the entry)."""
    arrays = [np.asarray(r, dtype=np.int64).reshape(-1) for r in ranks_per_user]
    indptr = np.zeros(len(arrays) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([a.size for a in arrays])
    ranks = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    return metrics_from_csr_ranks(ranks, indptr, ks)


def metrics_from_csr_ranks(ranks, indptr, ks: Sequence[int]) -> Dict[str, np.ndarray]:
    """Vectorised `metrics_from_ranks` for ranks stored row by row (user u: ranks[indptr[u]:indptr[u+1]])."""
    ks = normalize_ks(ks)
    ranks = np.asarray(ranks, dtype=np.int64)
    indptr = np.asarray(indptr, dtype=np.int64)
    if (indptr.ndim != 1 or indptr.size == 0 or indptr[0] != 0 or indptr[-1] != ranks.size
            or np.any(np.diff(indptr) < 0)):
        raise ValueError("indptr must start at 0, never decrease, and end at the number of ranks")
    if np.any(ranks < 1):
        raise ValueError("ranks start at 1")
    num_users = indptr.size - 1
    num_targets = np.diff(indptr)
    row = np.repeat(np.arange(num_users), num_targets)
    has_targets = num_targets > 0
    safe_count = np.maximum(num_targets, 1)
    discount = 1.0 / np.log2(ranks + 1.0)
    # ideal_dcg[m] = sum_{i=1}^{m} 1/log2(i+1), the DCG of m targets filling the top m ranks.
    largest = int(max(ks[-1], num_targets.max(initial=0)))
    ideal_dcg = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, largest + 2)))])
    metrics: Dict[str, np.ndarray] = {}
    for k in ks:
        within = ranks <= k
        hits = np.bincount(row, weights=within, minlength=num_users)
        dcg = np.bincount(row, weights=np.where(within, discount, 0.0), minlength=num_users)
        metrics[f"recall@{k}"] = np.where(has_targets, hits / safe_count, np.nan)
        metrics[f"ndcg@{k}"] = np.where(has_targets, dcg / ideal_dcg[np.maximum(np.minimum(num_targets, k), 1)],
                                        np.nan)
        metrics[f"hr@{k}"] = np.where(has_targets, (hits > 0).astype(np.float64), np.nan)
    best = np.full(num_users, np.inf)
    np.minimum.at(best, row, ranks)
    metrics["mrr"] = np.where(has_targets, 1.0 / best, np.nan)
    return metrics


def _item_indices(values, num_items: int, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer item indices, got dtype {array.dtype}")
    array = array.astype(np.int64).reshape(-1)
    if array.size and (array.min() < 0 or array.max() >= num_items):
        raise ValueError(f"{name} holds an item index outside [0, {num_items})")
    return array


# --------------------------------------------------------------------------------------------
# Batched TensorFlow path
# --------------------------------------------------------------------------------------------

_NEGATIVE_INFINITY = float("-inf")
_POSITIVE_INFINITY = float("inf")


def _interest_scores(query, items):
    """[B, C] scores of queries [B, K, d]: each item's best dot product over the K interests (a
    single-vector query is K = 1), the score a per-interest search merged by max gives."""
    shape = tf.shape(query)
    scores = tf.matmul(tf.reshape(query, [-1, shape[2]]), items, transpose_b=True)
    return tf.reduce_max(tf.reshape(scores, [shape[0], shape[1], -1]), axis=1)


def _masked_chunk_scores(query, items, masked_positions):
    """[B, C] scores with excluded and target items set to -inf, which no finite target ties."""
    scores = _interest_scores(query, items)
    fill = tf.fill(tf.shape(masked_positions)[:1], tf.constant(_NEGATIVE_INFINITY, scores.dtype))
    return tf.tensor_scatter_nd_update(scores, masked_positions, fill)


@tf.function(input_signature=[
    tf.TensorSpec([None, None, None], tf.float32),  # query interests [B, K, d]
    tf.TensorSpec([None, None], tf.float32),  # item chunk [C, d]
    tf.TensorSpec([None, 2], tf.int64),       # (row, column in chunk) of masked items
    tf.TensorSpec([None, None], tf.float32),  # target scores [B, T], padding +inf
])
def _chunk_counts_by_comparison(query, items, masked_positions, target_scores):
    scores = _masked_chunk_scores(query, items, masked_positions)

    def count_one_target_column(column):
        return tf.reduce_sum(tf.cast(scores >= column[:, tf.newaxis], tf.int32), axis=1)

    counts = tf.map_fn(count_one_target_column, tf.transpose(target_scores), fn_output_signature=tf.int32)
    return tf.transpose(counts)


@tf.function(input_signature=[
    tf.TensorSpec([None, None, None], tf.float32),  # query interests [B, K, d]
    tf.TensorSpec([None, None], tf.float32),  # item chunk [C, d]
    tf.TensorSpec([None, 2], tf.int64),       # (row, column in chunk) of masked items
    tf.TensorSpec([None, None], tf.float32),  # target scores sorted ascending per row [B, T], padding +inf
    tf.TensorSpec([None, None], tf.int32),    # per target: #targets of its row scoring strictly below it
])
def _chunk_counts_by_search(query, items, masked_positions, sorted_target_scores, targets_below):
    scores = _masked_chunk_scores(query, items, masked_positions)
    # below_or_at[b, j] = #targets of row b with score <= s_bj. Item j scores at or above the
    # target with `targets_below` = m exactly when below_or_at >= m + 1.
    below_or_at = tf.searchsorted(sorted_target_scores, scores, side="right", out_type=tf.int32)
    width = tf.shape(sorted_target_scores)[1] + 1
    histogram = tf.math.bincount(below_or_at, minlength=width, maxlength=width, axis=-1, dtype=tf.int32)
    at_least = tf.cumsum(histogram, axis=1, reverse=True)
    return tf.gather(at_least, targets_below + 1, batch_dims=1)


@tf.function(input_signature=[
    tf.TensorSpec([None, None, None], tf.float32),  # query interests [B, K, d]
    tf.TensorSpec([None, None], tf.float32),  # embeddings of distinct target items [U, d]
    tf.TensorSpec([None, 2], tf.int64),       # (row, column in U) per target
])
def _target_scores(query, target_items, positions):
    # The same scoring as the chunks, so a target tied with a non-target (same embedding) stays tied.
    return tf.gather_nd(_interest_scores(query, target_items), positions)


def score_targets_against_catalogue(query_embeddings, item_embeddings, targets_indptr, targets_indices,
                                    exclude_indptr, exclude_indices, item_chunk: int = 65536,
                                    item_chunks: Optional[Sequence[tf.Tensor]] = None
                                    ) -> Tuple[np.ndarray, np.ndarray]:
    """Scores of a batch of users' targets and, per target, the non-target items at or above it.

    Row b of the CSR pairs (indptr, indices) is query b. Returns (target_scores, at_or_above),
    both aligned with `targets_indices`: at_or_above counts items that are neither excluded nor
    targets of that row and score >= the target. Add 1 and the within-row target order
    (`ranks_from_counts`) to get ranks.

    Args:
      query_embeddings: [B, d] float32, or [B, K, d] for K interests per user: an item's score is
        then its largest dot product over the K interests.
      item_embeddings: [N, d] float32 NumPy array; scores are dot products.
      item_chunk: items scored at a time; memory is O(B * item_chunk).
      item_chunks: optional pre-split tensors of `item_embeddings` (consecutive, `item_chunk`
        rows each), so a caller looping over user batches converts the catalogue once.
    """
    query = np.asarray(query_embeddings, dtype=np.float32)
    if query.ndim == 2:
        query = query[:, np.newaxis, :]
    items = np.asarray(item_embeddings, dtype=np.float32)
    batch_size = query.shape[0]
    num_items = items.shape[0]
    targets_indptr = np.asarray(targets_indptr, dtype=np.int64)
    targets_indices = np.asarray(targets_indices, dtype=np.int64)
    exclude_indptr = np.asarray(exclude_indptr, dtype=np.int64)
    exclude_indices = np.asarray(exclude_indices, dtype=np.int64)
    target_row = np.repeat(np.arange(batch_size), np.diff(targets_indptr))
    exclude_row = np.repeat(np.arange(batch_size), np.diff(exclude_indptr))
    if targets_indices.size == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)

    target_scores = _scores_of_targets(query, items, target_row, targets_indices, item_chunk)
    if not np.all(np.isfinite(target_scores)):
        raise ValueError("a target's score is not finite; check the query and item embeddings")

    # Padded [B, T] layout of the targets, padding +inf so it sorts last and is never reached.
    max_targets = int(np.diff(targets_indptr).max())
    column = np.arange(targets_indices.size) - targets_indptr[target_row]
    padded = np.full((batch_size, max_targets), _POSITIVE_INFINITY, dtype=np.float32)
    padded[target_row, column] = target_scores

    # Masked (row, item) pairs sorted by item, so each chunk takes a contiguous slice.
    masked_row = np.concatenate([exclude_row, target_row])
    masked_item = np.concatenate([exclude_indices, targets_indices])
    order = np.argsort(masked_item, kind="stable")
    masked_row, masked_item = masked_row[order], masked_item[order]

    use_comparison = max_targets <= _MAX_TARGETS_FOR_DIRECT_COMPARISON
    if not use_comparison:
        sorted_padded = np.sort(padded, axis=1)
        targets_below = tf.searchsorted(sorted_padded, padded, side="left", out_type=tf.int32)
        sorted_padded = tf.constant(sorted_padded)
    padded = tf.constant(padded)
    query_tensor = tf.constant(query)
    if item_chunks is None:
        item_chunks = [tf.constant(items[start:start + item_chunk]) for start in range(0, num_items, item_chunk)]

    counts = np.zeros((batch_size, max_targets), dtype=np.int64)
    start = 0
    for chunk in item_chunks:
        stop = start + int(chunk.shape[0])
        low, high = np.searchsorted(masked_item, [start, stop], side="left")
        positions = np.stack([masked_row[low:high], masked_item[low:high] - start], axis=1)
        if use_comparison:
            chunk_counts = _chunk_counts_by_comparison(query_tensor, chunk, positions, padded)
        else:
            chunk_counts = _chunk_counts_by_search(query_tensor, chunk, positions, sorted_padded, targets_below)
        counts += chunk_counts.numpy()
        start = stop
    if start != num_items:
        raise ValueError(f"item_chunks cover {start} items, expected {num_items}")
    return target_scores, counts[target_row, column]


def _scores_of_targets(query, items, target_row, target_items, item_chunk):
    distinct, column = np.unique(target_items, return_inverse=True)
    scores = np.empty(target_items.size, dtype=np.float32)
    query_tensor = tf.constant(query)
    # Chunked over the distinct targets too, so this step also stays within O(B * item_chunk).
    for start in range(0, distinct.size, item_chunk):
        selected = np.flatnonzero((column >= start) & (column < start + item_chunk))
        positions = np.stack([target_row[selected], column[selected] - start], axis=1)
        chunk = tf.constant(items[distinct[start:start + item_chunk]])
        scores[selected] = _target_scores(query_tensor, chunk, positions).numpy()
    return scores


def ranks_from_counts(at_or_above, target_scores, targets_indptr, targets_indices) -> np.ndarray:
    """Ranks from `score_targets_against_catalogue` output, for these rows' targets (CSR).

    rank = 1 + at_or_above + #targets of the same row ordered before it (score descending,
    item index ascending). Passing a subset of each row's targets ranks them as if the other
    targets were excluded.
    """
    at_or_above = np.asarray(at_or_above, dtype=np.int64)
    target_scores = np.asarray(target_scores)
    targets_indptr = np.asarray(targets_indptr, dtype=np.int64)
    targets_indices = np.asarray(targets_indices, dtype=np.int64)
    row = np.repeat(np.arange(targets_indptr.size - 1), np.diff(targets_indptr))
    order = np.lexsort((targets_indices, -target_scores, row))
    before = np.empty(row.size, dtype=np.int64)
    before[order] = np.arange(row.size) - targets_indptr[row[order]]
    return 1 + at_or_above + before


def batched_target_ranks(query_embeddings, item_embeddings, targets_indptr, targets_indices,
                         exclude_indptr, exclude_indices, item_chunk: int = 65536) -> np.ndarray:
    """Ranks of a batch of users' targets (CSR rows = queries), aligned with `targets_indices`."""
    scores, at_or_above = score_targets_against_catalogue(
        query_embeddings, item_embeddings, targets_indptr, targets_indices, exclude_indptr, exclude_indices,
        item_chunk)
    return ranks_from_counts(at_or_above, scores, targets_indptr, targets_indices)
