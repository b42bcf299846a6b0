"""Streaming full-ranking evaluation of a retrieval model, overall and by item/user group.

Every user is scored against the whole catalogue (dot products of `query_fn(users)` with the
item embeddings), a batch of users and a chunk of items at a time, so memory stays at
O(batch_size * item_chunk) scores even for millions of items. Ranks follow the convention of
`tfrs_llmrec.metrics.ranking`: the user's excluded (training) items never count, ties with
non-targets count against the target, the user's own targets are ordered by score then index.

Input layout. `users` holds the user indices passed to `query_fn`; row i of the CSR pairs
(`targets_indptr`, `targets_indices`) and (`exclude_indptr`, `exclude_indices`) belongs to
users[i]. Per-entity arrays are indexed by entity index: `item_is_head[item]`,
`item_popularity[item]`, `user_is_active[user]`.

Groups. Summaries average per-user metrics over users (macro average):

- "overall": every user, all their targets.
- "head_items" / "tail_items": each user's targets restricted to head (resp. tail) items,
  averaged over the users who have at least one. The other group's targets of the same user
  are treated as excluded: they neither push the group's targets down nor count as hits, so a
  user's head metrics are exactly what an evaluation with only the head targets would give
  (recall@K divides by the number of head targets). Every other item of the catalogue,
  head or tail, still competes.
- "active_users" / "inactive_users": overall per-user metrics averaged over each user group.
- "by_popularity_bucket": items sorted by training popularity (ascending, ties by index) and
  cut into 10 buckets of equal size (sizes differ by at most one); per bucket, recall@K for the
  largest K <= 20 among `ks` (the smallest K if none is <= 20), with targets restricted to the
  bucket the same way as head/tail, and the bucket's popularity range.

A group with no users reports "num_users": 0 and None for its metrics (valid JSON, no NaN).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfrs_llmrec.metrics.ranking import (
    metric_names,
    metrics_from_csr_ranks,
    normalize_ks,
    ranks_from_counts,
    score_targets_against_catalogue,
)

NUM_POPULARITY_BUCKETS = 10
BUCKET_METRIC_MAX_K = 20

OVERALL = "overall"
HEAD_ITEMS = "head_items"
TAIL_ITEMS = "tail_items"
ACTIVE_USERS = "active_users"
INACTIVE_USERS = "inactive_users"
BY_POPULARITY_BUCKET = "by_popularity_bucket"


@dataclass
class RetrievalEvaluation:
    """Per-user metrics and their summary.

    `per_user[group][metric]` is aligned with `users`, for groups "overall", and when
    `item_is_head` was given "head_items" and "tail_items" (NaN for a user without targets in
    the group). `target_ranks` is aligned with `targets_indices` (ranks against all targets).
    """

    users: np.ndarray
    ks: tuple
    target_ranks: np.ndarray
    per_user: Dict[str, Dict[str, np.ndarray]]
    summary: dict
    seconds: float = 0.0
    metric_names: List[str] = field(default_factory=list)


def evaluate_retrieval(query_fn: Callable[[np.ndarray], np.ndarray], item_embeddings, users,
                       targets_indptr, targets_indices, exclude_indptr, exclude_indices, ks: Sequence[int],
                       item_is_head=None, user_is_active=None, item_popularity=None, batch_size: int = 512,
                       item_chunk: int = 65536, progress: bool = True) -> RetrievalEvaluation:
    """Full-ranking metrics of `query_fn` x `item_embeddings` for `users` (see module docstring).

    Args:
      query_fn: int64 user indices [B] -> float32 query embeddings [B, d], or [B, K, d] for
        multi-interest models (an item scores its best dot product over the K interests, what a
        per-interest search merged by max score returns).
      item_embeddings: [N, d]; a user's score for item j is the dot product with row j. The
        popularity baseline is d = 1 with queries of ones.
      users: [U] user indices, one per CSR row.
      targets_indptr, targets_indices: CSR of each user's targets (at least one, distinct).
      exclude_indptr, exclude_indices: CSR of each user's excluded items (may be empty rows).
      ks: cutoffs for recall, ndcg and hr.
      item_is_head: [N] bool, or None to skip the head/tail split.
      user_is_active: bool indexed by user index, or None to skip the user split.
      item_popularity: [N] training counts, or None to skip the popularity buckets.
      batch_size: users scored at a time.
      item_chunk: items scored at a time.
      progress: show a tqdm bar over users.
    """
    started = time.perf_counter()
    ks = normalize_ks(ks)
    item_embeddings = _float_matrix(item_embeddings, "item_embeddings")
    num_items = item_embeddings.shape[0]
    users = _index_vector(users, "users")
    targets_indptr, targets_indices = _csr(targets_indptr, targets_indices, users.size, num_items, "targets")
    exclude_indptr, exclude_indices = _csr(exclude_indptr, exclude_indices, users.size, num_items, "exclude")
    target_counts = np.diff(targets_indptr)
    if np.any(target_counts == 0):
        row = int(np.flatnonzero(target_counts == 0)[0])
        raise ValueError(f"user {int(users[row])} (row {row}) has no targets; evaluate only users with targets")
    _check_distinct_targets(targets_indptr, targets_indices, users)
    if batch_size < 1 or item_chunk < 1:
        raise ValueError(f"batch_size and item_chunk must be positive, got {batch_size} and {item_chunk}")
    if item_is_head is not None:
        item_is_head = _bool_vector(item_is_head, "item_is_head", num_items)
    if item_popularity is not None:
        item_popularity = np.asarray(item_popularity)
        if item_popularity.shape != (num_items,):
            raise ValueError(f"item_popularity has shape {item_popularity.shape}, expected ({num_items},)")
    if user_is_active is not None:
        user_is_active = np.asarray(user_is_active)
        if user_is_active.ndim != 1 or (users.size and user_is_active.size <= users.max()):
            raise ValueError(f"user_is_active is indexed by user index and needs more than {int(users.max())} "
                             f"entries, got shape {user_is_active.shape}")
        user_is_active = _bool_vector(user_is_active, "user_is_active", user_is_active.size)

    # The catalogue is converted to tensors once and reused by every user batch.
    item_chunks = [tf.constant(item_embeddings[start:start + item_chunk])
                   for start in range(0, num_items, item_chunk)]
    target_scores = np.empty(targets_indices.size, dtype=np.float32)
    at_or_above = np.empty(targets_indices.size, dtype=np.int64)
    with tqdm(total=users.size, desc="evaluating", unit="user", disable=not progress) as bar:
        for start in range(0, users.size, batch_size):
            stop = min(start + batch_size, users.size)
            query = np.asarray(query_fn(users[start:stop].astype(np.int64)), dtype=np.float32)
            if query.shape[:1] != (stop - start,) or query.ndim not in (2, 3) \
                    or query.shape[-1] != item_embeddings.shape[1]:
                raise ValueError(f"query_fn returned shape {query.shape} for {stop - start} users, expected "
                                 f"({stop - start}, {item_embeddings.shape[1]}) or ({stop - start}, K, "
                                 f"{item_embeddings.shape[1]})")
            if not np.all(np.isfinite(query)):
                raise ValueError("query_fn returned non-finite values")
            low, high = targets_indptr[start], targets_indptr[stop]
            batch_scores, batch_counts = score_targets_against_catalogue(
                query, item_embeddings, targets_indptr[start:stop + 1] - low, targets_indices[low:high],
                exclude_indptr[start:stop + 1] - exclude_indptr[start],
                exclude_indices[exclude_indptr[start]:exclude_indptr[stop]], item_chunk, item_chunks)
            target_scores[low:high] = batch_scores
            at_or_above[low:high] = batch_counts
            bar.update(stop - start)

    def group_ranks(keep: Optional[np.ndarray]):
        """Ranks and CSR pointers of each user's targets restricted to `keep` (None: all)."""
        if keep is None:
            keep = np.ones(targets_indices.size, dtype=bool)
        row = np.repeat(np.arange(users.size), target_counts)
        indptr = np.zeros(users.size + 1, dtype=np.int64)
        indptr[1:] = np.cumsum(np.bincount(row[keep], minlength=users.size))
        ranks = ranks_from_counts(at_or_above[keep], target_scores[keep], indptr, targets_indices[keep])
        return ranks, indptr

    names = metric_names(ks)
    target_ranks, _ = group_ranks(None)
    per_user = {OVERALL: metrics_from_csr_ranks(target_ranks, targets_indptr, ks)}
    summary: dict = {OVERALL: _average(per_user[OVERALL], names, np.ones(users.size, dtype=bool), target_counts)}
    if item_is_head is not None:
        for group, keep in ((HEAD_ITEMS, item_is_head[targets_indices]), (TAIL_ITEMS, ~item_is_head[targets_indices])):
            ranks, indptr = group_ranks(keep)
            per_user[group] = metrics_from_csr_ranks(ranks, indptr, ks)
            counts = np.diff(indptr)
            summary[group] = _average(per_user[group], names, counts > 0, counts)
    if user_is_active is not None:
        active = user_is_active[users]
        summary[ACTIVE_USERS] = _average(per_user[OVERALL], names, active, target_counts)
        summary[INACTIVE_USERS] = _average(per_user[OVERALL], names, ~active, target_counts)
    if item_popularity is not None:
        below = [k for k in ks if k <= BUCKET_METRIC_MAX_K]
        bucket_k = below[-1] if below else ks[0]
        summary["bucket_metric"] = f"recall@{bucket_k}"
        summary[BY_POPULARITY_BUCKET] = _popularity_buckets(item_popularity, targets_indices, group_ranks, bucket_k)
    return RetrievalEvaluation(users=users, ks=ks, target_ranks=target_ranks, per_user=per_user, summary=summary,
                               seconds=time.perf_counter() - started, metric_names=names)


def popularity_buckets(item_popularity) -> Tuple[np.ndarray, List[dict]]:
    """(bucket of each item, one entry per bucket with its size and popularity range): items sorted
    by training popularity (ascending, ties by index) and cut into NUM_POPULARITY_BUCKETS equal parts."""
    item_popularity = np.asarray(item_popularity)
    num_items = item_popularity.size
    by_popularity = np.lexsort((np.arange(num_items), item_popularity))
    bucket_of_item = np.empty(num_items, dtype=np.int64)
    buckets = []
    for bucket, items in enumerate(np.array_split(by_popularity, NUM_POPULARITY_BUCKETS)):
        bucket_of_item[items] = bucket
        buckets.append({"bucket": bucket, "num_items": int(items.size),
                        "min_popularity": _plain(item_popularity[items].min()) if items.size else None,
                        "max_popularity": _plain(item_popularity[items].max()) if items.size else None})
    return bucket_of_item, buckets


def mean_by_popularity_bucket(values, item_popularity, name: str) -> List[dict]:
    """Per popularity bucket (see `popularity_buckets`), the mean of a per-item value, as `name`."""
    values = np.asarray(values, dtype=np.float64)
    bucket_of_item, buckets = popularity_buckets(item_popularity)
    for entry in buckets:
        chosen = values[bucket_of_item == entry["bucket"]]
        entry[name] = float(chosen.mean()) if chosen.size else None
    return buckets


def _popularity_buckets(item_popularity, targets_indices, group_ranks, k) -> List[dict]:
    bucket_of_item, buckets = popularity_buckets(item_popularity)
    name = f"recall@{k}"
    for entry in buckets:
        keep = bucket_of_item[targets_indices] == entry["bucket"]
        ranks, indptr = group_ranks(keep)
        counts = np.diff(indptr)
        recall = metrics_from_csr_ranks(ranks, indptr, [k])[name]
        entry.update(_average({name: recall}, [name], counts > 0, counts))
    return buckets


def _average(per_user: Dict[str, np.ndarray], names: Sequence[str], selected: np.ndarray,
             target_counts: np.ndarray) -> dict:
    num_users = int(selected.sum())
    summary = {name: (float(np.mean(per_user[name][selected])) if num_users else None) for name in names}
    summary["num_users"] = num_users
    summary["num_targets"] = int(target_counts[selected].sum())
    return summary


def _plain(value):
    """A NumPy scalar as a JSON-friendly Python number."""
    return value.item() if hasattr(value, "item") else value


def _float_matrix(values, name: str) -> np.ndarray:
    matrix = np.asarray(values, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"{name} must have shape (num_items, dim) with both positive, got {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{name} holds non-finite values")
    return matrix


def _index_vector(values, name: str) -> np.ndarray:
    vector = np.asarray(values)
    if vector.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {vector.shape}")
    if vector.size and not np.issubdtype(vector.dtype, np.integer):
        raise ValueError(f"{name} must hold integer indices, got dtype {vector.dtype}")
    vector = vector.astype(np.int64)
    if vector.size and vector.min() < 0:
        raise ValueError(f"{name} holds a negative index")
    return vector


def _bool_vector(values, name: str, size: int) -> np.ndarray:
    vector = np.asarray(values)
    if vector.shape != (size,):
        raise ValueError(f"{name} has shape {vector.shape}, expected ({size},)")
    if vector.dtype != bool and not np.all((vector == 0) | (vector == 1)):
        raise ValueError(f"{name} must be boolean")
    return vector.astype(bool)


def _csr(indptr, indices, num_rows: int, num_items: int, name: str):
    indptr = _index_vector(indptr, f"{name}_indptr")
    indices = _index_vector(indices, f"{name}_indices")
    if indptr.size != num_rows + 1:
        raise ValueError(f"{name}_indptr has {indptr.size} entries, expected len(users) + 1 = {num_rows + 1}")
    if indptr[0] != 0 or indptr[-1] != indices.size or np.any(np.diff(indptr) < 0):
        raise ValueError(f"{name}_indptr must start at 0, never decrease and end at len({name}_indices) "
                         f"= {indices.size}")
    if indices.size and indices.max() >= num_items:
        raise ValueError(f"{name}_indices holds item index {int(indices.max())}, outside the catalogue "
                         f"of {num_items} items")
    return indptr, indices


def _check_distinct_targets(indptr, indices, users) -> None:
    row = np.repeat(np.arange(users.size), np.diff(indptr))
    order = np.lexsort((indices, row))
    repeated = (row[order][1:] == row[order][:-1]) & (indices[order][1:] == indices[order][:-1])
    if np.any(repeated):
        bad_row = int(row[order][1:][repeated][0])
        raise ValueError(f"user {int(users[bad_row])} (row {bad_row}) lists a target item twice")
