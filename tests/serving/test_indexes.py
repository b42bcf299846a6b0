import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.serving.indexes import IndexSettings, ScannParameters, build_index, top_k_recall


# Worked by hand from the rule: leaves = round(sqrt(N)); leaves searched = the most of
# ceil(leaves x 10K / N) and min(ceil(leaves / 5), ceil(2.4 x sqrt(leaves))); re-scored max(10K, 250).
@pytest.mark.parametrize("num_items, k, expected", [
    (3, 10, ScannParameters(2, 2, 250, 2)),  # round(1.73) leaves, all searched for 10 x K items
    (100, 10, ScannParameters(10, 10, 250, 2)),  # 10 x K = every item
    (1_000, 10, ScannParameters(32, 7, 250, 2)),  # 10 x K: ceil(3.2) = 4 < a fifth: ceil(6.4); 2.4 x 5.66 = 13.6
    (1_300, 100, ScannParameters(36, 28, 1000, 2)),  # 10 x K: ceil(27.7), as the previous rule
    (2_500, 100, ScannParameters(50, 20, 1000, 2)),  # 10 x K: 20 = a fifth
    (10_000, 10, ScannParameters(100, 20, 250, 2)),  # a fifth: 20 < 2.4 x 10 = 24
    (17_000, 100, ScannParameters(130, 26, 1000, 2)),  # a fifth: 26 < 2.4 x 11.40 = 27.4, as the previous rule
    (20_000, 10, ScannParameters(141, 29, 250, 2)),  # a fifth: ceil(28.2) = ceil(2.4 x 11.87 = 28.5)
    (100_000, 10, ScannParameters(316, 43, 250, 2)),  # 2.4 x 17.78 = 42.7 < a fifth: ceil(63.2)
    (1_000_000, 10, ScannParameters(1000, 76, 250, 2)),  # 2.4 x 31.62 = 75.9 < a fifth: 200
    (1_000_000, 100, ScannParameters(1000, 76, 1000, 2)),  # 10 x K: 1 leaf
])
def test_defaults_by_catalogue_size(num_items, k, expected):
    settings = IndexSettings("scann", k)
    assert settings.resolved_scann(num_items) == expected
    assert settings.resolved_leaves(num_items) == (expected.num_leaves, expected.num_leaves_to_search)


def test_explicit_values_win():
    explicit = IndexSettings("scann", 10, num_leaves=300, num_leaves_to_search=5, num_reordering_candidates=30,
                             dimensions_per_block=1)
    assert explicit.resolved_scann(1_000_000) == ScannParameters(300, 5, 30, 1)
    # Defaults still follow a configured number of leaves: 2.4 x sqrt(300) = 41.6 < a fifth: 60.
    assert IndexSettings("scann", 10, num_leaves=300).resolved_scann(1_000_000) == ScannParameters(300, 42, 250, 2)
    # No more leaves are searched than there are.
    assert IndexSettings("scann", 10, num_leaves=8, num_leaves_to_search=50).resolved_leaves(100) == (8, 8)


def clustered(rng, num_items=5000, dim=32, clusters=100, num_queries=500):
    """Items around Zipf-sized clusters, and queries that each mix two items with some noise."""
    centres = rng.normal(size=(clusters, dim)) / np.sqrt(dim)
    popularity = 1.0 / np.arange(1, clusters + 1) ** 0.8
    sizes = rng.multinomial(num_items, popularity / popularity.sum())
    items = np.repeat(centres, sizes, axis=0) + rng.normal(scale=0.5, size=(num_items, dim)) / np.sqrt(dim)
    queries = items[rng.integers(0, num_items, (num_queries, 2))].mean(axis=1)
    queries += rng.normal(scale=0.3, size=queries.shape) / np.sqrt(dim)
    return items.astype(np.float32), queries.astype(np.float32)


def test_default_scann_index_finds_what_brute_force_finds():
    items, queries = clustered(np.random.default_rng(0))
    item_ids = [str(row) for row in range(len(items))]

    def top_10(settings):
        return build_index(settings, items, item_ids)(tf.constant(queries))[1].numpy().astype(np.int64)

    exact = top_10(IndexSettings("brute_force", 10))
    # Over seeds 0-19 the defaults (71 leaves, 15 searched) measured 0.91-0.96, 1 leaf 0.34-0.48.
    assert top_k_recall(top_10(IndexSettings("scann", 10)), exact) >= 0.85
    assert top_k_recall(top_10(IndexSettings("scann", 10, num_leaves_to_search=1)), exact) < 0.7


def test_the_same_seed_builds_the_same_scann_index():
    items, queries = clustered(np.random.default_rng(1), num_items=3000, num_queries=300)
    item_ids = [str(row) for row in range(len(items))]

    def search(seed):
        scores, ids = build_index(IndexSettings("scann", 10, seed=seed), items, item_ids)(tf.constant(queries))
        return scores.numpy(), ids.numpy()

    first, again, other = search(7), search(7), search(8)
    np.testing.assert_array_equal(first[1], again[1])
    np.testing.assert_array_equal(first[0], again[0])
    # Another seed draws other leaves and codebooks, so some approximate scores differ.
    assert not np.array_equal(first[0], other[0])
