import math

import numpy as np
import pytest

from tfrs_llmrec.evaluation import evaluate_retrieval
from tfrs_llmrec.metrics.ranking import metrics_from_ranks, ranks_from_scores

D1, D2, D3, D4 = 1.0, 1.0 / math.log2(3), 0.5, 1.0 / math.log2(5)
IDCG2 = D1 + D2  # two targets at ranks 1 and 2
NAN = float("nan")

# Hand-made case: 3 users x 6 items. Row u of SCORES is user u's score for items 0..5; the query
# of user u is one-hot(u) and item j's embedding is column j, so scores are exactly these.
SCORES = np.array([
    [6, 5, 4, 3, 2, 1],  # user 0: excluded {0}, targets {1 (head), 3 (tail)}
    [1, 2, 3, 4, 5, 6],  # user 1: excluded {5} (scores above the target), target {4 (tail)}
    [3, 3, 3, 1, 4, 0],  # user 2: excluded {}, targets {0 (head), 2 (tail)}, ties at 3
], dtype=np.float32)
TARGETS = [[1, 3], [4], [0, 2]]
EXCLUDED = [[0], [5], []]
ITEM_IS_HEAD = np.array([True, True, False, False, False, False])
ITEM_POPULARITY = np.array([50, 40, 5, 4, 3, 2])
USER_IS_ACTIVE = np.array([True, False, True, False])  # indexed by user; user 3 is not evaluated
KS = [1, 2, 50]  # 50 exceeds the catalogue; buckets report recall@2 (largest K <= 20)


def _csr(rows):
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    indices = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows]) if rows else np.zeros(0, np.int64)
    return indptr, indices


def _one_hot_queries(user_indices):
    return np.eye(3, dtype=np.float32)[user_indices]


def _evaluate_hand_case(**overrides):
    arguments = dict(query_fn=_one_hot_queries, item_embeddings=SCORES.T, users=np.arange(3),
                     ks=KS, item_is_head=ITEM_IS_HEAD, user_is_active=USER_IS_ACTIVE,
                     item_popularity=ITEM_POPULARITY, batch_size=2, item_chunk=4, progress=False)
    arguments.update(overrides)
    targets_indptr, targets_indices = _csr(TARGETS)
    exclude_indptr, exclude_indices = _csr(EXCLUDED)
    return evaluate_retrieval(targets_indptr=targets_indptr, targets_indices=targets_indices,
                              exclude_indptr=exclude_indptr, exclude_indices=exclude_indices, **arguments)


def _assert_per_user(actual, expected):
    for name, values in expected.items():
        np.testing.assert_allclose(actual[name], values, rtol=1e-12, err_msg=name)


def test_hand_made_case_overall():
    evaluation = _evaluate_hand_case()
    # User 0, candidates {2, 4, 5} (0 excluded, 1 and 3 targets):
    #   item 1 (5): nothing above -> rank 1; item 3 (3): item 2 (4) above, target 1 before it -> 1 + 1 + 1 = 3.
    # User 1: item 4 (5); only item 5 (6) is above and it is excluded -> rank 1.
    # User 2, candidates {1, 3, 4, 5}: item 0 (3): items 1 (3, tie) and 4 (4) -> 1 + 2 = 3;
    #   item 2 (3): the same two plus target 0 (tied, lower index) -> 1 + 2 + 1 = 4.
    assert evaluation.target_ranks.tolist() == [1, 3, 1, 3, 4]
    _assert_per_user(evaluation.per_user["overall"], {
        # u0 ranks {1, 3}; u1 {1}; u2 {3, 4}.
        "hr@1": [1, 1, 0], "recall@1": [0.5, 1, 0], "ndcg@1": [1, 1, 0],  # IDCG@1 = D1 = 1
        "hr@2": [1, 1, 0], "recall@2": [0.5, 1, 0], "ndcg@2": [D1 / IDCG2, 1, 0],
        "hr@50": [1, 1, 1], "recall@50": [1, 1, 1], "ndcg@50": [(D1 + D3) / IDCG2, 1, (D3 + D4) / IDCG2],
        "mrr": [1, 1, 1 / 3],
    })
    overall = evaluation.summary["overall"]
    assert overall["num_users"] == 3 and overall["num_targets"] == 5
    assert overall["recall@1"] == pytest.approx(1.5 / 3)
    assert overall["hr@2"] == pytest.approx(2 / 3)
    assert overall["ndcg@50"] == pytest.approx(((D1 + D3) / IDCG2 + 1 + (D3 + D4) / IDCG2) / 3)
    assert overall["mrr"] == pytest.approx(7 / 9)


def test_hand_made_case_head_and_tail_items():
    evaluation = _evaluate_hand_case()
    # Head targets: u0 {1}, u2 {0}; u1 has none (NaN, not averaged).
    #   u0 item 1 -> rank 1 (as overall). u2 item 0: tail target 2 is excluded now, but items
    #   1 and 4 are still above/tied -> rank 3.
    _assert_per_user(evaluation.per_user["head_items"], {
        "hr@1": [1, NAN, 0], "recall@2": [1, NAN, 0], "ndcg@50": [1, NAN, D3], "mrr": [1, NAN, 1 / 3],
    })
    head = evaluation.summary["head_items"]
    assert (head["num_users"], head["num_targets"]) == (2, 2)
    assert head["hr@1"] == 0.5 and head["recall@50"] == 1.0
    assert head["ndcg@50"] == pytest.approx((1 + D3) / 2)
    assert head["mrr"] == pytest.approx(2 / 3)
    # Tail targets: u0 {3}: head target 1 no longer counts -> only item 2 above -> rank 2 (3 overall).
    #   u1 {4} -> rank 1. u2 {2}: head target 0 excluded -> items 1 and 4 -> rank 3 (4 overall).
    _assert_per_user(evaluation.per_user["tail_items"], {
        "hr@1": [0, 1, 0], "hr@2": [1, 1, 0], "ndcg@2": [D2, 1, 0], "ndcg@50": [D2, 1, D3], "mrr": [0.5, 1, 1 / 3],
    })
    tail = evaluation.summary["tail_items"]
    assert (tail["num_users"], tail["num_targets"]) == (3, 3)
    assert tail["recall@2"] == pytest.approx(2 / 3)
    assert tail["ndcg@50"] == pytest.approx((D2 + 1 + D3) / 3)
    assert tail["mrr"] == pytest.approx((0.5 + 1 + 1 / 3) / 3)


def test_hand_made_case_active_and_inactive_users():
    summary = _evaluate_hand_case().summary
    # Active users 0 and 2, inactive user 1 (overall per-user metrics).
    assert summary["active_users"]["num_users"] == 2
    assert summary["active_users"]["recall@1"] == pytest.approx(0.25)
    assert summary["active_users"]["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    assert summary["active_users"]["ndcg@50"] == pytest.approx(((D1 + D3) / IDCG2 + (D3 + D4) / IDCG2) / 2)
    assert summary["inactive_users"]["num_users"] == 1
    assert all(summary["inactive_users"][name] == 1.0 for name in ("recall@1", "ndcg@2", "hr@50", "mrr"))


def test_hand_made_case_popularity_buckets():
    summary = _evaluate_hand_case().summary
    assert summary["bucket_metric"] == "recall@2"
    buckets = summary["by_popularity_bucket"]
    assert len(buckets) == 10
    # Six items in ten buckets: one item each in buckets 0-5 (least popular first), 6-9 empty.
    assert [(b["num_items"], b["min_popularity"], b["max_popularity"]) for b in buckets[:6]] == [
        (1, 2, 2), (1, 3, 3), (1, 4, 4), (1, 5, 5), (1, 40, 40), (1, 50, 50)]
    assert all(b["num_items"] == 0 and b["min_popularity"] is None and b["num_users"] == 0 for b in buckets[6:])
    # Bucket item (target of user, rank with the user's other targets excluded):
    #   5: no target; 4: u1 rank 1; 3: u0 rank 2; 2: u2 rank 3; 1: u0 rank 1; 0: u2 rank 3.
    assert [b["recall@2"] for b in buckets] == [None, 1.0, 1.0, 0.0, 1.0, 0.0, None, None, None, None]
    assert [b["num_users"] for b in buckets[:6]] == [0, 1, 1, 1, 1, 1]


def test_optional_groups_are_left_out():
    evaluation = _evaluate_hand_case(item_is_head=None, user_is_active=None, item_popularity=None, progress=True)
    assert set(evaluation.summary) == {"overall"}
    assert set(evaluation.per_user) == {"overall"}


def test_constant_scores_earn_nothing():
    # d = 1, every item scores 1: each target ties every candidate.
    evaluation = _evaluate_hand_case(query_fn=lambda users: np.ones((len(users), 1), np.float32),
                                     item_embeddings=np.ones((6, 1)))
    overall = evaluation.summary["overall"]
    assert overall["hr@1"] == 0.0 and overall["hr@2"] == 0.0
    # u0: 3 candidates {2, 4, 5} -> ranks 4, 5; u1: 4 candidates {0, 1, 2, 3} -> 5;
    # u2: 4 candidates {1, 3, 4, 5} -> 5, 6.
    assert evaluation.target_ranks.tolist() == [4, 5, 5, 5, 6]


def test_popularity_baseline_as_one_dimensional_embeddings():
    counts = np.array([5.0, 9.0, 1.0, 9.0])
    evaluation = evaluate_retrieval(lambda users: np.ones((len(users), 1), np.float32), counts[:, None],
                                    np.array([0]), np.array([0, 1]), np.array([3]), np.array([0, 0]),
                                    np.zeros(0, np.int64), ks=[1, 2], progress=False)
    # Item 3 (9) ties item 1 (9): pessimistic -> rank 2.
    assert evaluation.target_ranks.tolist() == [2]
    assert evaluation.summary["overall"]["hr@1"] == 0.0 and evaluation.summary["overall"]["hr@2"] == 1.0


def test_streaming_path_equals_numpy_reference_on_random_users():
    rng = np.random.default_rng(7)
    num_items, dim = 53, 4
    user_embeddings = rng.integers(-2, 3, size=(100, dim)).astype(np.float32)  # ties happen often
    item_embeddings = rng.integers(-2, 3, size=(num_items, dim)).astype(np.float32)
    users = rng.permutation(100)[:37]  # 37 users in batches of 8: the last batch has 5
    targets, excluded = [], []
    for _ in users:
        chosen = rng.permutation(num_items)
        count = int(rng.integers(1, 12))
        targets.append(chosen[:count])
        excluded.append(chosen[count:count + int(rng.integers(0, 15))])
    item_is_head = rng.random(num_items) < 0.3
    targets_indptr, targets_indices = _csr(targets)
    exclude_indptr, exclude_indices = _csr(excluded)
    evaluation = evaluate_retrieval(lambda u: user_embeddings[u], item_embeddings, users, targets_indptr,
                                    targets_indices, exclude_indptr, exclude_indices, ks=[1, 5, 20],
                                    item_is_head=item_is_head, batch_size=8, item_chunk=7, progress=False)
    scores = user_embeddings[users] @ item_embeddings.T
    reference = [ranks_from_scores(scores[row], targets[row], excluded[row]) for row in range(users.size)]
    np.testing.assert_array_equal(evaluation.target_ranks, np.concatenate(reference))
    _assert_per_user(evaluation.per_user["overall"], metrics_from_ranks(reference, [1, 5, 20]))
    # Head group = the reference run with only head targets and the tail targets excluded.
    head_reference = []
    for row in range(users.size):
        is_head = item_is_head[targets[row]]
        head_reference.append(ranks_from_scores(scores[row], targets[row][is_head],
                                                np.concatenate([excluded[row], targets[row][~is_head]])))
    _assert_per_user(evaluation.per_user["head_items"], metrics_from_ranks(head_reference, [1, 5, 20]))


@pytest.mark.parametrize("change, message", [
    (dict(query_fn=lambda users: np.ones((len(users), 2), np.float32)), "query_fn returned shape"),
    (dict(item_embeddings=np.ones(6)), "item_embeddings must have shape"),
    (dict(targets_indices=np.array([1, 3, 4, 0, 6])), "outside the catalogue"),
    (dict(targets_indices=np.array([1, 3, 4, 0, -1])), "negative"),
    (dict(targets_indptr=np.array([0, 2, 5])), "len\\(users\\) \\+ 1"),
    (dict(targets_indptr=np.array([0, 2, 2, 5])), "has no targets"),
    (dict(targets_indices=np.array([1, 1, 4, 0, 2])), "twice"),
    (dict(exclude_indptr=np.array([0, 1, 2, 3])), "end at len"),
    (dict(item_is_head=np.ones(5, bool)), "item_is_head has shape"),
    (dict(item_popularity=np.ones(7)), "item_popularity has shape"),
    (dict(user_is_active=np.ones(2, bool)), "user_is_active"),
    (dict(ks=[0, 5]), "positive integers"),
])
def test_invalid_inputs_raise(change, message):
    targets_indptr, targets_indices = _csr(TARGETS)
    exclude_indptr, exclude_indices = _csr(EXCLUDED)
    arguments = dict(query_fn=_one_hot_queries, item_embeddings=SCORES.T, users=np.arange(3),
                     targets_indptr=targets_indptr, targets_indices=targets_indices, exclude_indptr=exclude_indptr,
                     exclude_indices=exclude_indices, ks=KS, item_is_head=ITEM_IS_HEAD,
                     user_is_active=USER_IS_ACTIVE, item_popularity=ITEM_POPULARITY, progress=False)
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        evaluate_retrieval(**arguments)


def test_mean_by_popularity_bucket_by_hand():
    from tfrs_llmrec.evaluation import mean_by_popularity_bucket

    # 20 items, popularity = index reversed: bucket b (2 items each) holds items 19-2b and 18-2b.
    popularity = np.arange(20)[::-1]
    values = np.arange(20, dtype=float)
    buckets = mean_by_popularity_bucket(values, popularity, "gate")
    assert [entry["num_items"] for entry in buckets] == [2] * 10
    assert [entry["gate"] for entry in buckets] == [18.5 - 2 * b for b in range(10)]
    assert buckets[0]["min_popularity"] == 0 and buckets[9]["max_popularity"] == 19


def test_multi_interest_queries_score_each_item_by_its_best_interest():
    # Two interests per user; item j's score is the larger of its two dot products.
    interests = np.array([[[1, 0], [0, 1]], [[2, 0], [0, 0]]], np.float32)  # users 0 and 1
    items = np.array([[3, 0], [0, 2], [1, 1], [0, 4], [-1, -1]], np.float32)
    # User 0 scores: max(x, y) -> [3, 2, 1, 4, -1]; user 1: max(2x, 0) -> [6, 0, 2, 0, 0].
    targets_indptr, targets_indices = _csr([[1], [2, 3]])
    exclude_indptr, exclude_indices = _csr([[3], []])
    evaluation = evaluate_retrieval(lambda users: interests[users], items, np.arange(2), targets_indptr,
                                    targets_indices, exclude_indptr, exclude_indices, ks=[1, 2],
                                    batch_size=1, item_chunk=2, progress=False)
    # User 0: item 1 (2) is below item 0 (3) only (item 3 excluded) -> rank 2.
    # User 1: item 2 (2) below item 0 (6) -> rank 2; item 3 (0) ties items 1 and 4 (0) and is below
    # item 0 and target 2 (ordered before it) -> 1 + 3 + 1 = 5.
    np.testing.assert_array_equal(evaluation.target_ranks, [2, 2, 5])
    assert evaluation.summary["overall"]["recall@2"] == pytest.approx((1.0 + 0.5) / 2)


def test_multi_interest_streaming_path_equals_numpy_reference():
    rng = np.random.default_rng(11)
    num_items, dim, interests = 41, 3, 4
    queries = rng.integers(-2, 3, size=(30, interests, dim)).astype(np.float32)
    item_embeddings = rng.integers(-2, 3, size=(num_items, dim)).astype(np.float32)
    targets = [rng.permutation(num_items)[:int(rng.integers(1, 10))] for _ in range(30)]
    targets_indptr, targets_indices = _csr(targets)
    exclude_indptr, exclude_indices = _csr([[] for _ in range(30)])
    evaluation = evaluate_retrieval(lambda u: queries[u], item_embeddings, np.arange(30), targets_indptr,
                                    targets_indices, exclude_indptr, exclude_indices, ks=[5],
                                    batch_size=7, item_chunk=6, progress=False)
    scores = np.einsum("ukd,id->uki", queries, item_embeddings).max(axis=1)
    reference = [ranks_from_scores(scores[row], targets[row], []) for row in range(30)]
    np.testing.assert_array_equal(evaluation.target_ranks, np.concatenate(reference))
