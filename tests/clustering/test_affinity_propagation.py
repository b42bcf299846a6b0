"""Affinity Propagation (scikit-learn plus our fallbacks) on hand-checkable cases, and typical-user
selection with sampling."""

import importlib
import itertools
import warnings

import numpy as np
import pytest
from sklearn.cluster import AffinityPropagation

from tfrs_llmrec.clustering import APResult, TypicalUsers, affinity_propagation, select_typical_users
ap_module = importlib.import_module("tfrs_llmrec.clustering.affinity_propagation")


def negative_squared_distances(points) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return -((points[:, None, :] - points[None, :, :]) ** 2).sum(axis=-1)


FOUR_POINTS = negative_squared_distances([[0.0, 0.0], [0.0, 1.0], [10.0, 10.0], [10.0, 11.0]])


def random_points(n, seed, dim=2):
    return np.random.default_rng(seed).normal(size=(n, dim))


def clustered_users(n_users=5000, n_clusters=10, dim=32, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = rng.integers(0, n_clusters, size=n_users)
    vectors = centres[truth] + spread * rng.normal(size=(n_users, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, truth


# ---------------------------------------------------------------- affinity_propagation


def test_two_obvious_clusters_of_four_points():
    result = affinity_propagation(FOUR_POINTS)
    assert isinstance(result, APResult)
    assert result.n_clusters == 2
    assert result.exemplars[0] in (0, 1) and result.exemplars[1] in (2, 3)
    assert result.labels.tolist() == [0, 0, 1, 1]
    assert result.converged and not result.fallback
    assert result.exemplars.dtype == np.int64 and result.labels.dtype == np.int64


def test_well_separated_blobs_are_recovered_with_an_exemplar_inside_each():
    rng = np.random.default_rng(9)
    centres = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0]])
    truth = np.repeat(np.arange(4), 15)
    points = centres[truth] + rng.normal(scale=0.5, size=(60, 2))
    similarity = negative_squared_distances(points)
    result = affinity_propagation(similarity, preference=-50.0)
    assert result.n_clusters == 4 and result.converged and not result.fallback
    # Same partition as the truth, each exemplar inside the blob it serves.
    assert np.array_equal(truth[result.exemplars][result.labels], truth)
    assert sorted(truth[result.exemplars].tolist()) == [0, 1, 2, 3]
    # Each exemplar is its cluster's medoid (the member closest to all others), sklearn's refinement.
    for cluster, exemplar in enumerate(result.exemplars):
        members = np.flatnonzero(result.labels == cluster)
        block = similarity[np.ix_(members, members)]
        assert exemplar == members[int(np.argmax(block.sum(axis=0)))]


def test_every_exemplar_labels_itself_and_points_join_their_most_similar_exemplar():
    similarity = negative_squared_distances(random_points(60, seed=3))
    result = affinity_propagation(similarity)
    assert 1 < result.n_clusters < 60
    assert result.labels[result.exemplars].tolist() == list(range(result.n_clusters))
    members = np.setdiff1d(np.arange(60), result.exemplars)
    nearest = np.argmax(similarity[np.ix_(members, result.exemplars)], axis=1)
    assert result.labels[members].tolist() == nearest.tolist()


def test_a_very_low_preference_gives_one_cluster():
    result = affinity_propagation(FOUR_POINTS, preference=-1e6)
    assert result.n_clusters == 1 and not result.fallback and result.converged
    assert result.labels.tolist() == [0, 0, 0, 0]


def test_preference_zero_on_negative_squared_distances_makes_every_point_an_exemplar():
    similarity = negative_squared_distances(random_points(30, seed=4))
    result = affinity_propagation(similarity, preference=0.0)
    assert result.exemplars.tolist() == list(range(30))
    assert result.labels.tolist() == list(range(30))
    assert result.converged


def test_raising_the_preference_raises_the_number_of_clusters():
    similarity = negative_squared_distances(random_points(40, seed=5))
    low = affinity_propagation(similarity, preference=-1e4).n_clusters
    median = affinity_propagation(similarity).n_clusters
    high = affinity_propagation(similarity, preference=-0.05).n_clusters
    assert low == 1 < median < high <= 40


def test_a_per_point_preference_array_is_used():
    # Point 1 prefers much more strongly to be an exemplar: it wins its pair.
    preference = np.array([-100.0, -10.0, -100.0, -100.0])
    result = affinity_propagation(FOUR_POINTS, preference=preference)
    assert result.exemplars[0] == 1 and result.labels.tolist() == [0, 0, 1, 1]


def test_the_diagonal_of_the_similarity_is_ignored():
    changed = FOUR_POINTS.copy()
    np.fill_diagonal(changed, 123.0)
    first, second = affinity_propagation(FOUR_POINTS), affinity_propagation(changed)
    assert first.exemplars.tolist() == second.exemplars.tolist()
    assert first.labels.tolist() == second.labels.tolist()


def sklearn_direct(similarity, preference, damping=0.7, seed=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AffinityPropagation(affinity="precomputed", preference=preference, damping=damping, max_iter=300,
                                   convergence_iter=15, random_state=seed).fit(similarity)


def test_an_ordinary_input_gets_exactly_what_sklearn_gives():
    # The message passing is scikit-learn's: same exemplars and labels (preference = median off-diagonal).
    vectors, _ = clustered_users(n_users=300, n_clusters=6, dim=16, spread=0.3, seed=8)
    similarity = vectors @ vectors.T
    median = float(np.median(similarity[~np.eye(300, dtype=bool)]))
    model = sklearn_direct(similarity, median)
    result = affinity_propagation(similarity)
    assert 6 <= result.n_clusters < 300 and result.converged and result.note == ""
    assert result.exemplars.tolist() == model.cluster_centers_indices_.tolist()
    assert result.labels.tolist() == model.labels_.tolist()
    assert result.iterations == model.n_iter_
    # The exemplar is a member of its own cluster, and of no other.
    assert result.labels[result.exemplars].tolist() == list(range(result.n_clusters))


def test_convergence_flag_and_iteration_count(monkeypatch):
    similarity = negative_squared_distances(random_points(50, seed=6))
    done = affinity_propagation(similarity, convergence_iter=15)
    assert done.converged and 15 < done.iterations < 300
    assert (done.damping, done.note, done.fallback) == (0.7, "", False)
    # 12 iterations cannot converge (sklearn needs more than convergence_iter): every retry is cut
    # too, and the result is the best cut run, flagged as not converged but not as a fallback.
    cut = affinity_propagation(similarity, max_iter=12, convergence_iter=15)
    assert not cut.converged and not cut.fallback and "no run converged" in cut.note
    assert cut.iterations == 12 + 40 + 81  # 12, then 12 * 0.5 / 0.15 and 12 * 0.5 / 0.075 iterations, rounded up
    assert cut.n_clusters > 1 and cut.labels.shape == (50,)
    assert cut.labels[cut.exemplars].tolist() == list(range(cut.n_clusters))
    monkeypatch.setattr(ap_module, "DAMPING_RETRIES", 0)
    once = affinity_propagation(similarity, max_iter=12, convergence_iter=15)
    assert once.iterations == 12 and not once.converged and once.damping == 0.7


def test_non_convergence_does_not_leak_warnings():
    # sklearn warns (ConvergenceWarning, and numpy deprecations every iteration); we report instead.
    similarity = negative_squared_distances(random_points(50, seed=6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cut = affinity_propagation(similarity, max_iter=12)
        none = affinity_propagation(FOUR_POINTS, preference=np.array([-1e6, -1e6, -5e5, -1e6]), max_iter=1)
        fine = affinity_propagation(similarity)
    assert not cut.converged and none.fallback and fine.converged


def test_no_exemplar_falls_back_to_the_best_single_cluster():
    # One iteration with a preference this low never makes a point an exemplar, at any damping;
    # sklearn answers labels -1 and no exemplar. Point 2's higher preference makes it the best exemplar.
    preference = np.array([-1e6, -1e6, -5e5, -1e6])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = AffinityPropagation(affinity="precomputed", preference=preference, max_iter=1,
                                  random_state=0).fit(FOUR_POINTS)
    assert len(raw.cluster_centers_indices_) == 0 and raw.labels_.tolist() == [-1] * 4
    result = affinity_propagation(FOUR_POINTS, preference=preference, max_iter=1)
    assert result.fallback and not result.converged and "no exemplar" in result.note
    assert result.exemplars.tolist() == [2] and result.labels.tolist() == [0, 0, 0, 0]
    assert result.iterations == 1 + 4 + 7  # the retries ran too
    again = affinity_propagation(FOUR_POINTS, preference=preference, max_iter=1, seed=99)
    assert again.exemplars.tolist() == [2] and again.fallback


def test_the_no_exemplar_fallback_picks_the_best_single_exemplar_not_the_first_point():
    similarity = negative_squared_distances([[0.0], [1.0], [2.0], [3.0], [4.0]])
    result = affinity_propagation(similarity, preference=-1e6, max_iter=1)
    assert result.fallback and result.exemplars.tolist() == [2]  # the median point


def net_similarity(similarity, preference, result):
    members = np.setdiff1d(np.arange(similarity.shape[0]), result.exemplars)
    preferences = np.broadcast_to(np.asarray(preference, dtype=np.float64), (similarity.shape[0],))
    return preferences[result.exemplars].sum() + similarity[members, result.exemplars[result.labels[members]]].sum()


def test_everyone_alone_far_below_one_cluster_is_retried_with_more_damping():
    # A preference far below the similarities: at damping 0.7 sklearn "converges" on every point
    # alone (net -4e5, against about -1e4 for one cluster); a more damped run finds the single best exemplar.
    similarity = negative_squared_distances(random_points(40, seed=5))
    raw = sklearn_direct(similarity, -1e4)
    assert len(raw.cluster_centers_indices_) == 40
    result = affinity_propagation(similarity, preference=-1e4)
    assert result.n_clusters == 1 and not result.fallback and result.converged
    assert result.damping > 0.7 and "retried" in result.note
    column_sums = similarity.sum(axis=0) - similarity.diagonal()
    assert result.exemplars.tolist() == [int(np.argmax(column_sums))]
    assert result.labels.tolist() == [0] * 40


def test_heavy_damping_that_stops_on_a_transient_is_retried():
    # At damping 0.9 sklearn stops with every point an exemplar, a transient worse than one cluster.
    median = float(np.median(FOUR_POINTS[~np.eye(4, dtype=bool)]))
    assert len(sklearn_direct(FOUR_POINTS, median, damping=0.9).cluster_centers_indices_) == 4
    result = affinity_propagation(FOUR_POINTS, damping=0.9)
    assert result.labels.tolist() == [0, 0, 1, 1] and result.converged and result.damping > 0.9


def test_a_result_worse_than_one_cluster_is_replaced_and_flagged():
    # Here every run settles on two clusters whose net similarity is below the best single one.
    similarity = negative_squared_distances(np.random.default_rng(0).normal(size=(20, 3)))
    preference = float(similarity.min())
    result = affinity_propagation(similarity, preference=preference, damping=0.5)
    assert result.fallback and not result.converged and "worse than a trivial" in result.note
    column_sums = similarity.sum(axis=0) - similarity.diagonal()
    assert result.exemplars.tolist() == [int(np.argmax(column_sums))]
    assert result.labels.tolist() == [0] * 20


@pytest.mark.parametrize("seed", range(4))
def test_a_result_is_never_worse_than_one_cluster_or_every_point_alone(seed):
    similarity = negative_squared_distances(random_points(30, seed=10 + seed, dim=3))
    lowest = float(similarity.min())
    for preference in [0.0, None, lowest, 30 * lowest]:
        for damping in (0.5, 0.7):
            result = affinity_propagation(similarity, preference=preference, damping=damping)
            value = np.median(similarity[~np.eye(30, dtype=bool)]) if preference is None else preference
            column_sums = similarity.sum(axis=0) - similarity.diagonal() + value
            trivial = max(column_sums.max(), 30 * value)
            assert net_similarity(similarity, value, result) >= trivial - 1e-9 * (abs(trivial) + 1)


def test_same_seed_same_result_and_a_clear_answer_does_not_depend_on_the_seed():
    similarity = negative_squared_distances(random_points(80, seed=7))
    first, second = affinity_propagation(similarity, seed=11), affinity_propagation(similarity, seed=11)
    assert np.array_equal(first.exemplars, second.exemplars)
    assert np.array_equal(first.labels, second.labels)
    assert first.iterations == second.iterations
    other = affinity_propagation(FOUR_POINTS, seed=12345)
    assert other.labels.tolist() == [0, 0, 1, 1]


def test_the_seed_breaks_exact_ties_reproducibly():
    # Each pair of FOUR_POINTS is an exact tie: sklearn's seeded perturbation picks the exemplar.
    picks = {seed: affinity_propagation(FOUR_POINTS, seed=seed).exemplars.tolist() for seed in range(8)}
    assert len({tuple(pick) for pick in picks.values()}) > 1  # the seed matters here...
    for seed, pick in picks.items():  # ...and the same seed gives the same answer
        assert affinity_propagation(FOUR_POINTS, seed=seed).exemplars.tolist() == pick
        assert affinity_propagation(FOUR_POINTS, seed=seed).labels.tolist() == [0, 0, 1, 1]


def test_a_single_point_is_its_own_exemplar():
    result = affinity_propagation(np.array([[0.5]]))
    assert result.exemplars.tolist() == [0] and result.labels.tolist() == [0]
    assert result.converged and result.iterations == 0 and not result.fallback


def test_identical_points_form_one_cluster_unless_their_preference_is_higher():
    identical = np.zeros((6, 6))
    result = affinity_propagation(identical)
    assert result.exemplars.tolist() == [0] and result.labels.tolist() == [0] * 6
    assert result.converged and not result.fallback
    own = affinity_propagation(identical, preference=1.0)
    assert own.exemplars.tolist() == list(range(6)) and own.labels.tolist() == list(range(6))
    some = affinity_propagation(identical, preference=np.array([-1.0, 0.5, -1.0, 0.5, -1.0, -1.0]))
    assert some.exemplars.tolist() == [1, 3] and some.labels.tolist() == [0, 0, 0, 1, 0, 0]
    # Cosine similarities of identical unit vectors, with float rounding.
    vectors = np.tile(np.array([[0.6, 0.8]]), (5, 1))
    assert affinity_propagation(vectors @ vectors.T).n_clusters == 1
    # Equal up to rounding: the default preference (their median) ties with them, so one cluster.
    rounded = np.full((6, 6), 0.7) + 1e-16 * np.random.default_rng(0).normal(size=(6, 6))
    exact = affinity_propagation(rounded)
    assert exact.iterations == 0 and "solved exactly" in exact.note and exact.n_clusters == 1
    assert affinity_propagation(rounded, preference=0.71).n_clusters == 6


def test_identical_users_are_one_typical_user():
    vectors = np.tile(np.array([[0.3, -0.2, 0.9]]), (40, 1)) * np.linspace(1, 3, 40)[:, None]
    typical = select_typical_users(vectors, max_users=10)
    assert typical.n_clusters == 1 and np.all(typical.assignment == 0)
    assert "solved exactly" in typical.ap.note


def test_two_points():
    result = affinity_propagation(np.array([[0.0, -1.0], [-1.0, 0.0]]), preference=-10.0)
    assert result.n_clusters == 1 and sorted(result.labels.tolist()) == [0, 0]
    apart = affinity_propagation(np.array([[0.0, -1.0], [-1.0, 0.0]]), preference=0.0)
    assert apart.exemplars.tolist() == [0, 1]


@pytest.mark.parametrize("similarity, message", [
    (np.zeros((3, 4)), "square"),
    (np.zeros(4), "square"),
    (np.zeros((0, 0)), "empty"),
    (np.array([[0.0, np.nan], [1.0, 0.0]]), "NaN or infinite"),
    (np.array([[0.0, -np.inf], [1.0, 0.0]]), "NaN or infinite"),
])
def test_bad_similarity_is_rejected(similarity, message):
    with pytest.raises(ValueError, match=message):
        affinity_propagation(similarity)


@pytest.mark.parametrize("kwargs, message", [
    ({"damping": 0.49}, "damping"),
    ({"damping": 1.0}, "damping"),
    ({"preference": np.zeros(3)}, "preference"),
    ({"preference": np.zeros((4, 1))}, "preference"),
    ({"preference": float("nan")}, "preference"),
    ({"max_iter": 0}, "max_iter"),
    ({"max_iter": 2.5}, "max_iter"),
    ({"convergence_iter": 0}, "convergence_iter"),
])
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        affinity_propagation(FOUR_POINTS, **kwargs)


def test_damping_bounds_are_half_open():
    assert affinity_propagation(FOUR_POINTS, damping=0.5).n_clusters == 2
    assert affinity_propagation(FOUR_POINTS, damping=0.99).n_clusters == 2


# ---------------------------------------------------------------- select_typical_users


def test_small_user_sets_are_clustered_exactly():
    vectors, truth = clustered_users(n_users=200, n_clusters=4, dim=16, seed=1)
    typical = select_typical_users(vectors, max_users=500)
    assert isinstance(typical, TypicalUsers)
    assert typical.sampled.tolist() == list(range(200))
    assert np.array_equal(typical.exemplar_users, typical.ap.exemplars)
    assert np.array_equal(typical.assignment, typical.ap.labels)
    assert typical.assignment[typical.exemplar_users].tolist() == list(range(typical.n_clusters))
    assert np.all(truth[typical.exemplar_users[typical.assignment]] == truth)


def test_sampled_mode_keeps_every_user_with_an_exemplar_of_its_own_cluster():
    vectors, truth = clustered_users()
    typical = select_typical_users(vectors, max_users=500, chunk=333)

    assert typical.sampled.shape == (500,) and np.unique(typical.sampled).size == 500
    assert np.all(np.diff(typical.sampled) > 0) and typical.sampled.max() < 5000
    assert np.array_equal(typical.exemplar_users, typical.sampled[typical.ap.exemplars])
    assert typical.assignment.shape == (5000,) and typical.assignment.dtype == np.int64
    assert typical.assignment.min() >= 0 and typical.assignment.max() < typical.n_clusters

    purity = np.mean(truth[typical.exemplar_users[typical.assignment]] == truth)
    assert purity == 1.0
    assert set(truth[typical.exemplar_users].tolist()) == set(range(10))
    assert typical.assignment[typical.exemplar_users].tolist() == list(range(typical.n_clusters))

    unchunked = np.argmax(vectors @ vectors[typical.exemplar_users].T, axis=1)
    unchunked[typical.exemplar_users] = np.arange(typical.n_clusters)
    assert np.array_equal(typical.assignment, unchunked)
    # Users outside the sample: their nearest exemplar by cosine similarity, computed by hand.
    outside = np.setdiff1d(np.arange(5000), typical.sampled)
    exemplar_vectors = vectors[typical.exemplar_users]
    for user in outside[::97]:
        cosines = [float(vectors[user] @ exemplar) for exemplar in exemplar_vectors]
        assert typical.assignment[user] == int(np.argmax(cosines))
    # The exactly clustered users keep the labels message passing gave them.
    assert np.array_equal(typical.assignment[typical.sampled], typical.ap.labels)

    one_chunk = select_typical_users(vectors, max_users=500, chunk=8192)
    assert np.array_equal(one_chunk.exemplar_users, typical.exemplar_users)
    assert np.array_equal(one_chunk.assignment, typical.assignment)


def test_selection_is_deterministic_under_the_seed_and_ignores_vector_scale():
    vectors, _ = clustered_users(n_users=1200, n_clusters=5, dim=8, seed=2)
    first = select_typical_users(vectors, max_users=150, seed=3)
    second = select_typical_users(vectors * 7.5, max_users=150, seed=3)
    assert np.array_equal(first.sampled, second.sampled)
    assert np.array_equal(first.exemplar_users, second.exemplar_users)
    assert np.array_equal(first.assignment, second.assignment)
    other = select_typical_users(vectors, max_users=150, seed=4)
    assert not np.array_equal(other.sampled, first.sampled)


def test_a_preference_passed_to_selection_controls_the_cluster_count():
    vectors, _ = clustered_users(n_users=300, n_clusters=3, dim=8, seed=5)
    one = select_typical_users(vectors, max_users=300, preference=-100.0)
    assert one.n_clusters == 1 and np.all(one.assignment == 0)
    assert select_typical_users(vectors, max_users=300, preference=1.0).n_clusters == 300
    # Above any cosine similarity, every user is its own exemplar, duplicated users included.
    doubled = np.concatenate([vectors, vectors[:5]])
    alone = select_typical_users(doubled, max_users=400, preference=2.0)
    assert alone.assignment.tolist() == list(range(305))


def test_a_single_sampled_user_is_everyones_exemplar():
    vectors, _ = clustered_users(n_users=50, n_clusters=2, dim=4, seed=6)
    typical = select_typical_users(vectors, max_users=1)
    assert typical.exemplar_users.tolist() == typical.sampled.tolist()
    assert np.all(typical.assignment == 0)


@pytest.mark.parametrize("make, kwargs, message", [
    (lambda v: v[0], {}, r"\[U, d\]"),
    (lambda v: v[:0], {}, r"\[U, d\]"),
    (lambda v: v.astype(str), {}, "real numbers"),
    (lambda v: np.where(np.arange(len(v))[:, None] == 7, 0.0, v), {}, "row 7 is all zeros"),
    (lambda v: np.where(np.arange(len(v))[:, None] == 9, np.nan, v), {}, "row 9 contains NaN"),
    (lambda v: v, {"max_users": 0}, "max_users"),
    (lambda v: v, {"chunk": 0}, "chunk"),
    (lambda v: v, {"damping": 1.2}, "damping"),
])
def test_bad_selection_inputs_are_rejected(make, kwargs, message):
    vectors, _ = clustered_users(n_users=20, n_clusters=2, dim=4, seed=7)
    arguments = {"max_users": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        select_typical_users(make(vectors), **arguments)


def test_exhaustive_net_similarity_is_matched_on_a_small_clear_case():
    # Three tight pairs: the best exemplar set (by brute force) is one point per pair.
    points = [[0, 0], [0, 0.5], [5, 5], [5, 5.5], [-5, 5], [-5, 5.5]]
    similarity = negative_squared_distances(points)
    preference = -4.0

    def net(exemplars):
        chosen = list(exemplars)
        return preference * len(chosen) + sum(
            0.0 if i in chosen else max(similarity[i, k] for k in chosen) for i in range(6))

    best = max(net(e) for size in range(1, 7) for e in itertools.combinations(range(6), size))
    # Each pair is an exact tie; whatever the seed breaks it to, the optimum is reached (sklearn's
    # own epsilon perturbation alone misses it for about one seed in five).
    for seed in range(20):
        result = affinity_propagation(similarity, preference=preference, seed=seed)
        assert net(result.exemplars.tolist()) == pytest.approx(best)
        labels = result.labels.tolist()
        assert labels[0] == labels[1] and labels[2] == labels[3] and labels[4] == labels[5]
        assert len(set(labels)) == 3
