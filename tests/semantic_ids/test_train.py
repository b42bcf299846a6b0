import math

import numpy as np
import pytest

from tfrs_llmrec.config.schema import SemanticIdConfig
from tfrs_llmrec.semantic_ids import (
    assign_codes,
    code_statistics,
    disambiguate,
    fit_semantic_ids,
    fit_user_semantic_ids,
    load_quantizer,
    save_quantizer,
)


def normalised(matrix):
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def eight_clusters(seed=0):
    """800 L2-normalised 64-d vectors around 8 random directions (cosine within ~0.97, across ~0)."""
    rng = np.random.default_rng(seed)
    centres = normalised(rng.normal(size=(8, 64)))
    labels = np.repeat(np.arange(8), 100)
    return normalised(centres[labels] + 0.02 * rng.normal(size=(800, 64))), labels


@pytest.fixture(scope="module")
def clustered():
    vectors, labels = eight_clusters()
    config = SemanticIdConfig(num_levels=1, codebook_size=8, latent_dim=32, hidden_dims=[64], epochs=6,
                              batch_size=64)
    return vectors, labels, config, fit_semantic_ids(vectors, config, seed=0, progress=False)


def purity(assigned, truth):
    """Fraction of rows whose group's majority label is their own label."""
    return sum(np.bincount(truth[assigned == group]).max() for group in np.unique(assigned)) / truth.size


def test_one_level_of_eight_codes_recovers_eight_clusters(clustered):
    _, labels, _, result = clustered
    codes = result.codes[:, 0]
    assert result.codes.shape == (800, 1) and result.codes.dtype == np.int32
    assert purity(codes, labels) >= 0.95  # each code holds one cluster
    assert purity(labels, codes) >= 0.95  # each cluster sits in one code
    assert result.stats["usage_per_level"] == [1.0]
    assert result.stats["perplexity_per_level"][0] > 7.5


def test_reconstruction_error_decreases_over_training(clustered):
    _, _, config, result = clustered
    history = result.stats["history"]["reconstruction"]
    assert len(history) == config.epochs
    assert all(later < earlier for earlier, later in zip(history, history[1:]))
    assert result.stats["reconstruction_mse"] < result.stats["reconstruction_mse_of_zero"]


def test_stats_describe_the_run(clustered):
    vectors, _, config, result = clustered
    stats = result.stats
    assert len(stats["history"]["loss"]) == len(stats["history"]["usage_per_level"]) == config.epochs
    assert stats["collision_rate"] == 1.0 and stats["max_collision_group"] >= 90  # 800 items, 8 codes
    assert stats["seconds"] >= stats["train_seconds"] > 0
    assert 0 < stats["residual_fraction_per_level"][0] < 1
    assert result.mode == "clusters" and result.cardinalities == [8]
    np.testing.assert_array_equal(assign_codes(result.model, vectors), result.codes)


def test_quantizer_round_trips_through_a_checkpoint(clustered, tmp_path):
    vectors, _, _, result = clustered
    directory = save_quantizer(result.model, tmp_path / "rqvae")
    save_quantizer(result.model, directory)  # overwriting a finished save is fine
    assert sorted(path.name for path in tmp_path.iterdir()) == ["rqvae"]
    restored = load_quantizer(directory)
    np.testing.assert_array_equal(assign_codes(restored, vectors), result.codes)
    np.testing.assert_allclose(restored.quantizer.codebooks.numpy(), result.model.quantizer.codebooks.numpy())


def test_user_ids_in_the_item_code_space(clustered):
    vectors, _, config, result = clustered
    users = normalised(vectors[:10] + vectors[10:20])
    user_result = fit_user_semantic_ids(users, config, seed=0, progress=False, item_model=result.model)
    assert user_result.model is result.model
    np.testing.assert_array_equal(user_result.codes, assign_codes(result.model, users))
    assert user_result.stats["num_vectors"] == 10


def test_code_statistics_on_a_hand_built_case():
    codes = np.array([[0, 1], [0, 1], [1, 0], [2, 2], [0, 1], [1, 0], [3, 3]])
    stats = code_statistics(codes, codebook_size=8)
    assert stats["collision_rate"] == pytest.approx(5 / 7)  # three rows share (0,1), two share (1,0)
    assert stats["max_collision_group"] == 3
    assert stats["colliding_groups"] == 2 and stats["unique_tuples"] == 4
    assert stats["usage_per_level"] == [0.5, 0.5]
    shares = np.array([3, 2, 1, 1]) / 7
    assert stats["perplexity_per_level"][0] == pytest.approx(math.exp(-np.sum(shares * np.log(shares))))
    no_collisions = code_statistics(np.array([[0, 0], [0, 1]]), codebook_size=2)
    assert no_collisions["collision_rate"] == 0.0 and no_collisions["max_collision_group"] == 1


def test_disambiguation_numbers_colliding_rows_in_row_order():
    codes = np.array([[1, 2], [0, 0], [1, 2], [1, 2], [0, 0], [3, 1]])
    unique = disambiguate(codes)
    np.testing.assert_array_equal(unique[:, :2], codes)
    np.testing.assert_array_equal(unique[:, 2], [0, 0, 1, 2, 1, 0])
    # New rows continue after the numbers their tuple already uses.
    more = disambiguate(np.array([[1, 2], [5, 5], [0, 0]]), existing=unique)
    np.testing.assert_array_equal(more[:, 2], [3, 0, 2])


def test_unique_mode_makes_every_tuple_unique():
    rng = np.random.default_rng(1)
    distinct = normalised(rng.normal(size=(40, 16)))
    vectors = np.concatenate([distinct, distinct[:15], distinct[:5]])  # exact duplicates must collide
    config = SemanticIdConfig(num_levels=2, codebook_size=4, latent_dim=4, hidden_dims=[16], epochs=2, batch_size=32,
                              mode="unique")
    result = fit_semantic_ids(vectors, config, seed=0, progress=True)
    assert result.codes.shape == (60, 3)
    assert len({tuple(row) for row in result.codes.tolist()}) == 60
    np.testing.assert_array_equal(result.codes[:, :2], assign_codes(result.model, vectors))
    assert result.stats["collision_rate"] > 0 and result.stats["max_collision_group"] >= 3
    assert result.cardinalities == [4, 4, result.stats["max_collision_group"]]
    assert result.codes[40, 2] > result.codes[0, 2]  # a duplicate is numbered after its first occurrence


def test_same_seed_same_codes():
    rng = np.random.default_rng(2)
    vectors = normalised(rng.normal(size=(300, 16)))
    config = SemanticIdConfig(num_levels=2, codebook_size=8, latent_dim=4, hidden_dims=[16], epochs=3, batch_size=64)
    first = fit_semantic_ids(vectors, config, seed=7, progress=False)
    second = fit_semantic_ids(vectors, config, seed=7, progress=False)
    np.testing.assert_array_equal(first.codes, second.codes)
    assert first.stats["history"]["loss"] == second.stats["history"]["loss"]
    other = fit_semantic_ids(vectors, config, seed=8, progress=False)
    assert other.stats["history"]["loss"] != first.stats["history"]["loss"]


def test_bad_inputs_are_refused():
    config = SemanticIdConfig(epochs=1)
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        fit_semantic_ids(np.zeros(5), config, seed=0, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        fit_semantic_ids(np.full((3, 2), np.nan), config, seed=0, progress=False)
