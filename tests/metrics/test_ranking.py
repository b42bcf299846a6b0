import math

import numpy as np
import pytest

from tfrs_llmrec.metrics import ranking
from tfrs_llmrec.metrics.ranking import (
    batched_target_ranks,
    metric_names,
    metrics_from_ranks,
    ranks_from_scores,
)

# Discounts 1 / log2(rank + 1).
D1, D2, D3, D4 = 1.0, 1.0 / math.log2(3), 0.5, 1.0 / math.log2(5)


def _metrics(ranks, ks):
    return {name: float(values[0]) for name, values in metrics_from_ranks([ranks], ks).items()}


def test_single_target():
    # Item 2 scores 0.5; only item 1 (0.9) is above it -> rank 2.
    ranks = ranks_from_scores([0.1, 0.9, 0.5, 0.3], [2])
    assert ranks.tolist() == [2]
    m = _metrics(ranks, [1, 2])
    assert (m["hr@1"], m["recall@1"], m["ndcg@1"]) == (0.0, 0.0, 0.0)
    # @2: one hit; DCG = 1/log2(3), IDCG (one target) = 1.
    assert (m["hr@2"], m["recall@2"]) == (1.0, 1.0)
    assert m["ndcg@2"] == pytest.approx(D2)
    assert m["mrr"] == 0.5


def test_several_targets_per_user():
    # Targets 1 (0.8) and 3 (0.6). Item 1: non-targets above = {0} -> 1 + 1 + 0 = 2.
    # Item 3: non-targets above = {0, 2} -> 1 + 2 + 1 (target 1 is ordered before it) = 4.
    ranks = ranks_from_scores([0.9, 0.8, 0.7, 0.6, 0.5], [1, 3])
    assert ranks.tolist() == [2, 4]
    m = _metrics(ranks, [3, 4])
    # @3: one hit of two -> recall 1/2; NDCG = D2 / (D1 + D2).
    assert (m["hr@3"], m["recall@3"]) == (1.0, 0.5)
    assert m["ndcg@3"] == pytest.approx(D2 / (D1 + D2))
    # @4: both hit; NDCG = (D2 + D4) / (D1 + D2).
    assert m["recall@4"] == 1.0
    assert m["ndcg@4"] == pytest.approx((D2 + D4) / (D1 + D2))
    assert m["mrr"] == 0.5


def test_target_tied_with_a_non_target_is_ranked_below_it():
    # Item 1 ties target 0 at 0.5: it counts against the target -> rank 2, not 1.
    assert ranks_from_scores([0.5, 0.5, 0.2], [0]).tolist() == [2]


def test_tied_targets_are_ordered_by_item_index():
    # Targets 1 and 0 tie at 0.5 with nothing above: item 0 first (rank 1), item 1 next (rank 2).
    # Ranks come back in the order the targets were given.
    assert ranks_from_scores([0.5, 0.5, 0.2], [1, 0]).tolist() == [2, 1]


def test_constant_scores_earn_nothing():
    # Five items, all 1.0, item 0 excluded. Target 2 ties the 3 candidates {1, 3, 4} -> rank 4.
    ranks = ranks_from_scores(np.ones(5), [2], excluded=[0])
    assert ranks.tolist() == [4]
    m = _metrics(ranks, [3])
    assert (m["hr@3"], m["recall@3"], m["ndcg@3"]) == (0.0, 0.0, 0.0)
    # Two targets {2, 4}: candidates {1, 3} tie both -> 1 + 2 + 0 = 3 and 1 + 2 + 1 = 4.
    assert ranks_from_scores(np.ones(5), [2, 4], excluded=[0]).tolist() == [3, 4]


def test_excluded_items_above_the_target_do_not_count():
    # Items 0 and 1 score above target 3 but are training items -> rank 1.
    assert ranks_from_scores([0.9, 0.8, 0.1, 0.7], [3], excluded=[0, 1]).tolist() == [1]


def test_an_excluded_target_is_still_a_target():
    # Item 1 is both target and excluded: it is ranked (item 0 above it -> rank 2).
    assert ranks_from_scores([0.9, 0.8, 0.1], [1], excluded=[1]).tolist() == [2]


def test_cutoff_larger_than_the_catalogue():
    # Three items, target 2 is last -> rank 3; K = 100 > 3 catches it: NDCG = 1/log2(4) = 0.5.
    ranks = ranks_from_scores([0.3, 0.2, 0.1], [2])
    assert ranks.tolist() == [3]
    m = _metrics(ranks, [100])
    assert (m["hr@100"], m["recall@100"], m["ndcg@100"]) == (1.0, 1.0, D3)
    assert m["mrr"] == pytest.approx(1 / 3)


def test_ndcg_with_more_targets_than_the_cutoff():
    # |T| = 3 > K = 2, so IDCG has min(3, 2) = 2 terms: D1 + D2.
    # Ranks [1, 2, 5]: DCG@2 = D1 + D2 -> NDCG 1 while recall@2 = 2/3.
    m = _metrics([1, 2, 5], [1, 2])
    assert m["ndcg@2"] == pytest.approx(1.0)
    assert m["recall@2"] == pytest.approx(2 / 3)
    assert m["ndcg@1"] == 1.0 and m["recall@1"] == pytest.approx(1 / 3)
    # Ranks [2, 3, 4]: DCG@2 = D2 -> NDCG = D2 / (D1 + D2), recall 1/3, MRR 1/2.
    m = _metrics([2, 3, 4], [2])
    assert m["ndcg@2"] == pytest.approx(D2 / (D1 + D2))
    assert m["recall@2"] == pytest.approx(1 / 3)
    assert m["mrr"] == 0.5


def test_metrics_for_several_users_and_a_user_without_targets():
    per_user = metrics_from_ranks([[1], [3], []], [2])
    assert per_user["hr@2"][:2].tolist() == [1.0, 0.0]
    assert per_user["mrr"][:2].tolist() == pytest.approx([1.0, 1 / 3])
    assert all(np.isnan(values[2]) for values in per_user.values())
    assert list(per_user) == metric_names([2]) == ["recall@2", "ndcg@2", "hr@2", "mrr"]


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="distinct"):
        ranks_from_scores([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="outside"):
        ranks_from_scores([0.1, 0.2], [2])
    with pytest.raises(ValueError, match="outside"):
        ranks_from_scores([0.1, 0.2], [0], excluded=[-1])
    with pytest.raises(ValueError, match="finite"):
        ranks_from_scores([np.nan, 0.2], [1])
    with pytest.raises(ValueError, match="positive integers"):
        metrics_from_ranks([[1]], [0])
    with pytest.raises(ValueError, match="start at 1"):
        metrics_from_ranks([[0]], [1])


def _random_batch(rng, num_users, num_items, max_targets, integer_embeddings):
    dim = 4
    if integer_embeddings:
        # Small integers: exact float32 products and plenty of ties.
        queries = rng.integers(-2, 3, size=(num_users, dim)).astype(np.float32)
        items = rng.integers(-2, 3, size=(num_items, dim)).astype(np.float32)
    else:
        queries = rng.normal(size=(num_users, dim)).astype(np.float32)
        items = rng.normal(size=(num_items, dim)).astype(np.float32)
    targets, excluded = [], []
    for _ in range(num_users):
        chosen = rng.permutation(num_items)
        count = int(rng.integers(1, max_targets + 1))
        targets.append(chosen[:count])
        # Mostly disjoint from the targets, sometimes overlapping one (a target stays a target).
        excluded.append(chosen[count - int(rng.integers(0, 2)):count + int(rng.integers(0, 10))])
    return queries, items, targets, excluded


def _csr(rows):
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    return indptr, np.concatenate(rows).astype(np.int64)


@pytest.mark.parametrize("max_targets", [3, 14])  # direct comparison (<= 8 targets) and binary search
@pytest.mark.parametrize("integer_embeddings", [True, False])
def test_batched_tensorflow_path_equals_numpy_reference(max_targets, integer_embeddings):
    rng = np.random.default_rng(max_targets + 10 * integer_embeddings)
    queries, items, targets, excluded = _random_batch(rng, 23, 53, max_targets, integer_embeddings)
    targets_indptr, targets_indices = _csr(targets)
    exclude_indptr, exclude_indices = _csr(excluded)
    # item_chunk 7 does not divide 53, so the last chunk is short.
    ranks = batched_target_ranks(queries, items, targets_indptr, targets_indices, exclude_indptr, exclude_indices,
                                 item_chunk=7)
    scores = queries @ items.T
    expected = np.concatenate([ranks_from_scores(scores[u], targets[u], excluded[u]) for u in range(len(targets))])
    np.testing.assert_array_equal(ranks, expected)


def test_batched_path_keeps_ties_between_items_with_equal_embeddings():
    # Item 4 copies target 1's embedding: the tie must count against the target, as in NumPy.
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(3, 16)).astype(np.float32)
    items = rng.normal(size=(9, 16)).astype(np.float32)
    items[4] = items[1]
    indptr = np.array([0, 1, 2, 3])
    ranks = batched_target_ranks(queries, items, indptr, np.array([1, 1, 1]), np.array([0, 0, 0, 0]),
                                 np.zeros(0, np.int64), item_chunk=2)
    expected = [ranks_from_scores(queries[u] @ items.T, [1])[0] for u in range(3)]
    assert ranks.tolist() == [int(r) for r in expected]
    assert all(r >= 2 for r in ranks)


def test_search_path_is_used_above_the_threshold(monkeypatch):
    # Force the binary-search path even for one target and check it against the reference.
    monkeypatch.setattr(ranking, "_MAX_TARGETS_FOR_DIRECT_COMPARISON", 0)
    ranks = batched_target_ranks(np.ones((1, 1), np.float32), np.array([[3.0], [1.0], [3.0], [2.0]], np.float32),
                                 np.array([0, 2]), np.array([1, 3]), np.array([0, 0]), np.zeros(0, np.int64),
                                 item_chunk=3)
    # Target 3 (2.0): non-targets above {0, 2} -> 3. Target 1 (1.0): {0, 2} -> 1 + 2 + 1 = 4.
    assert ranks.tolist() == [4, 3]
