"""EIMF explicit interests of the features job without an LLM (llm.interests_source=item_centroids),
on the tiny dataset of test_features.py, read back as a model would read them."""

import json
from dataclasses import replace

import numpy as np
import pytest
from sklearn.cluster import KMeans

from beam_jobs.features import CENTROID_N_INIT, item_centroid_interests, run_features
from tests.beam_jobs.test_features import prepared  # noqa: F401  (the module fixture)
from tfrs_llmrec.clustering import select_typical_users
from tfrs_llmrec.data.features import SemanticFeatures

MAX_INTERESTS = 3


def centroid_config(config, **llm):
    return replace(config.features, llm=replace(config.features.llm, interests_source="item_centroids",
                                                max_interests=MAX_INTERESTS, **llm))


@pytest.fixture(scope="module")
def centroid_run(prepared):  # noqa: F811
    config, dataset = prepared
    root = run_features(centroid_config(config), dataset, seed=0)
    return config, dataset, root, SemanticFeatures.open(root)


def independent_centroids(vectors, max_interests, seed):
    """The documented recipe, written out again: weighted k-means on the distinct rows."""
    rows, counts = np.unique(vectors.astype(np.float64), axis=0, return_counts=True)
    k = min(max_interests, len(rows))
    model = KMeans(n_clusters=k, n_init=CENTROID_N_INIT, random_state=seed).fit(rows, sample_weight=counts)
    sizes = np.array([counts[model.labels_ == c].sum() for c in range(k)])
    centres = model.cluster_centers_[np.argsort(-sizes, kind="stable")]
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def test_every_user_with_training_items_gets_unit_norm_interests(centroid_run):
    _, dataset, _, features = centroid_run
    lengths = dataset.split_items("train").lengths()
    assert (lengths > 0).all()
    counts = features.user_num_interests
    assert ((counts >= 1) & (counts <= MAX_INTERESTS)).all()
    assert features.user_interests.shape == (dataset.num_users, MAX_INTERESTS, features.user_history_vectors.shape[1])
    for user, count in enumerate(counts):
        np.testing.assert_allclose(np.linalg.norm(features.user_interests[user, :count], axis=1), 1.0, rtol=1e-5)
        assert not features.user_interests[user, count:].any()  # padding stays zero


def test_exemplars_get_the_centroids_of_their_items_and_their_cluster_shares_them(centroid_run):
    config, dataset, root, features = centroid_run
    llm = config.features.llm
    manifest = json.loads((root / "manifest.json").read_text())
    # The same typical users, recomputed from the user vectors the job wrote.
    active = np.flatnonzero(np.linalg.norm(features.user_history_vectors, axis=1) > 0)
    typical = select_typical_users(features.user_history_vectors[active], llm.ap_max_users,
                                   preference=llm.ap_preference, damping=llm.ap_damping, seed=0)
    exemplars = active[typical.exemplar_users]
    assert manifest["llm"]["interests"]["typical_users"] == len(exemplars)
    train = dataset.split_items("train")
    metadata = features.item_vectors["metadata"]
    for exemplar in exemplars:
        expected = independent_centroids(metadata[train.row(exemplar)], MAX_INTERESTS, seed=0)
        count = features.user_num_interests[exemplar]
        assert count == len(expected) == min(MAX_INTERESTS, len(np.unique(train.row(exemplar))))
        np.testing.assert_allclose(features.user_interests[exemplar, :count], expected, atol=1e-5)
    owners = exemplars[typical.assignment]
    np.testing.assert_array_equal(features.user_interests[active], features.user_interests[owners])
    np.testing.assert_array_equal(features.user_num_interests[active], features.user_num_interests[owners])
    # Not vacuous: several interests per user, and they differ between clusters.
    assert (features.user_num_interests > 1).any()
    assert len(exemplars) > 1 and len(np.unique(features.user_interests.reshape(dataset.num_users, -1), axis=0)) > 1


def test_manifest_labels_the_source(centroid_run, prepared):  # noqa: F811
    config, dataset, root, _ = centroid_run
    interests = json.loads((root / "manifest.json").read_text())["llm"]["interests"]
    assert interests["source"] == "item_centroids (no LLM)"
    assert interests["backend"] == "none" and interests["item_vectors"] == "metadata"
    assert interests["affinity_propagation"]["converged"] and not interests["affinity_propagation"]["fallback"]
    # The default source with no LLM: no interests, and the manifest says so.
    plain = run_features(config.features, dataset, seed=0)
    assert plain != root  # another config, another directory
    assert json.loads((plain / "manifest.json").read_text())["llm"]["interests"]["source"] == "none"
    assert not SemanticFeatures.open(plain).user_num_interests.any()


def test_the_same_config_twice_gives_the_same_interests(centroid_run, tmp_path):
    config, dataset, root, features = centroid_run
    again = run_features(centroid_config(config), dataset, seed=0, output_dir=tmp_path)
    assert again != root and again.name == root.name  # recomputed from scratch elsewhere
    rerun = SemanticFeatures.open(again)
    np.testing.assert_array_equal(rerun.user_num_interests, features.user_num_interests)
    np.testing.assert_array_equal(rerun.user_interests, features.user_interests)


def test_item_centroids_weigh_repeats_and_put_the_largest_cluster_first():
    rng = np.random.default_rng(0)
    small, large = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 1.0]) / np.sqrt(2)
    vectors = np.stack([small, small + 0.01, large + 0.01 * rng.normal(size=3), large + 0.01 * rng.normal(size=3)])
    vectors = np.concatenate([vectors, vectors[[2, 2, 3]]])  # the "large" items were bought again
    interests = item_centroid_interests(vectors.astype(np.float32), max_interests=2, seed=0)
    assert interests.shape == (2, 3) and interests.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(interests, axis=1), 1.0, rtol=1e-6)
    expected_large = vectors[[2, 3, 4, 5, 6]].mean(axis=0)
    np.testing.assert_allclose(interests[0], expected_large / np.linalg.norm(expected_large), atol=1e-6)
    expected_small = vectors[[0, 1]].mean(axis=0)
    np.testing.assert_allclose(interests[1], expected_small / np.linalg.norm(expected_small), atol=1e-6)
    # Fewer distinct items than max_interests: one interest per distinct item, no duplicate centres.
    assert item_centroid_interests(np.stack([small, small, large]), max_interests=5, seed=0).shape == (2, 3)
