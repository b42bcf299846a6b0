"""Collaborative-aware vectors (AKT-Rec's Eq. 1): pairs from timelines, the pair-agreement measure by
hand, and a projection that pulls co-occurring items together."""

import numpy as np
import pytest

from tfrs_llmrec.config.schema import CollaborativeProjectionConfig
from tfrs_llmrec.semantic_ids.collaborative import (cluster_pair_agreement, co_occurrence_pairs,
                                                    collaborative_projection, held_out_pairs)


def test_pairs_are_consecutive_items_within_each_timeline():
    # Rows [0, 1, 2], [3], [], [4, 4, 5]: no pair crosses a row, a repeat is no pair.
    pairs = co_occurrence_pairs([0, 3, 4, 4, 7], [0, 1, 2, 3, 4, 4, 5])
    assert pairs.tolist() == [[0, 1], [1, 2], [4, 5]]
    assert co_occurrence_pairs([0, 1], [7]).shape == (0, 2)


def test_pair_agreement_by_hand():
    clusters = np.array([0, 0, 1, 1, 1])
    pairs = np.array([[0, 1], [1, 2], [3, 4], [0, 4]])
    result = cluster_pair_agreement(clusters, pairs)
    assert result["same_cluster"] == pytest.approx(0.5)
    # Paired items 0, 1, 1, 2, 3, 4, 0, 4 are in clusters 0, 0, 0, 1, 1, 1, 0, 1: half each.
    assert result["random_baseline"] == pytest.approx(0.5 ** 2 + 0.5 ** 2)


def test_the_projection_pulls_co_occurring_items_together():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 16)).astype(np.float32)
    # Items 2k and 2k+1 are consumed together, though their text vectors are unrelated.
    pairs = np.array([[2 * k, 2 * k + 1] for k in range(100)] * 20)
    config = CollaborativeProjectionConfig(enabled=True, epochs=30, batch_size=64, learning_rate=0.01,
                                           temperature=0.1)
    result = collaborative_projection(vectors, pairs, config, seed=1)
    cosine = result.stats["held_out_pair_cosine"]
    assert cosine["after"] > cosine["before"] + 0.2, cosine
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, rtol=1e-5)
    assert result.stats["loss_per_epoch"][-1] < result.stats["loss_per_epoch"][0]
    train, held_out = held_out_pairs(pairs, seed=1)
    assert len(held_out) == 200 and len(train) == 1800
