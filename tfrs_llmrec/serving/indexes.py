"""Top-K index layers over item embeddings (TFRS BruteForce and ScaNN) and how to set them.

The ScaNN defaults depend on the catalogue size N and on K; `benchmarks/test_scann_scale.py`
measured them (recall@10 against exact search and queries/s against BruteForce at 1M items) and
fails if they stop reaching recall@10 >= 0.95 at >= 10x BruteForce's queries/s there.
"""

from __future__ import annotations

import functools
import math
import uuid
from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

# Up to about 20k items (144 leaves) a fifth of the leaves is searched, which measured recall@100
# 0.988 on 1.3k items and 0.932 on 17k. Beyond that a fixed fraction would make every query cost
# grow linearly with N and lose the speed-up, while a fixed number of leaves would lose recall, as a
# query's neighbours spread over more of the (smaller) leaves: searching 2.4 x sqrt(leaves) leaves,
# that is N^(3/4) items (76 of 1,000 leaves at 1M), measured recall@10 0.984-0.986 at 1M items at
# 17x BruteForce's queries/s (searching 40 leaves: 0.974; the previous fifth, 200 leaves, with 100
# candidates re-scored: 0.95 at about 11x on an idle machine).
SMALL_CATALOGUE_LEAVES_DIVISOR = 5  # search 1/5 of the leaves
LARGE_CATALOGUE_SEARCH_FACTOR = 2.4  # search 2.4 x sqrt(leaves) leaves when that is fewer
# Asymmetric hashing ranks the searched items only roughly: with 100 candidates re-scored exactly,
# recall@10 at 1M items stalled at 0.95 whether 76 or 200 leaves were searched; 250 gave 0.984.
REORDERING_CANDIDATES_PER_K = 10
MIN_REORDERING_CANDIDATES = 250
# TFRS's default, 2 dimensions per 4-bit code: 1 per code reached recall@10 0.9995 at 1M items but
# scanned 30% fewer queries/s in an 11% bigger index, and 0.98 was enough.
DIMENSIONS_PER_BLOCK = 2
TREE_TRAINING_ITERATIONS = 12  # TFRS's and ScaNN's default


@dataclass(frozen=True)
class ScannParameters:
    """Every ScaNN setting `build_index` passes to TFRS, after defaults are resolved."""

    num_leaves: int
    num_leaves_to_search: int
    num_reordering_candidates: int
    dimensions_per_block: int


@dataclass(frozen=True)
class IndexSettings:
    """Which index to build for top-`k` retrieval; ScaNN settings left None are chosen by catalogue size."""

    kind: Literal["brute_force", "scann"]
    k: int
    num_leaves: Optional[int] = None
    num_leaves_to_search: Optional[int] = None
    num_reordering_candidates: Optional[int] = None
    dimensions_per_block: Optional[int] = None
    # Seeds ScaNN's k-means (the leaves and the 4-bit codebooks): the same seed and embeddings build
    # the same index.
    seed: int = 0

    def resolved_leaves(self, num_items: int) -> tuple:
        """(num_leaves, num_leaves_to_search) for a catalogue of `num_items` items."""
        parameters = self.resolved_scann(num_items)
        return parameters.num_leaves, parameters.num_leaves_to_search

    def resolved_scann(self, num_items: int) -> ScannParameters:
        """The configured values, and for those left None: about sqrt(N) leaves (ScaNN's advice);
        enough leaves searched to hold about 10 x K items, and at least a fifth of them up to ~20k
        items or 2.4 x sqrt(leaves) beyond (see the constants above); max(10 x K, 250) candidates
        re-scored exactly. The leaves searched never exceed the leaves."""
        num_items = max(num_items, 1)
        leaves = self.num_leaves or max(1, min(num_items, round(math.sqrt(num_items))))
        if self.num_leaves_to_search:
            to_search = self.num_leaves_to_search
        else:
            holding_ten_k = -(-leaves * 10 * self.k // num_items)  # ceil(leaves x 10K / N), exactly
            minimum_searched = min(math.ceil(leaves / SMALL_CATALOGUE_LEAVES_DIVISOR),
                                   math.ceil(LARGE_CATALOGUE_SEARCH_FACTOR * math.sqrt(leaves)))
            to_search = max(1, holding_ten_k, minimum_searched)
        reordering = self.num_reordering_candidates or max(REORDERING_CANDIDATES_PER_K * self.k,
                                                           MIN_REORDERING_CANDIDATES)
        return ScannParameters(num_leaves=leaves, num_leaves_to_search=min(to_search, leaves),
                               num_reordering_candidates=reordering,
                               dimensions_per_block=self.dimensions_per_block or DIMENSIONS_PER_BLOCK)


def build_index(settings: IndexSettings, item_embeddings: np.ndarray, item_ids: Sequence[str]) -> tf.keras.layers.Layer:
    """A TFRS top-K layer over `item_embeddings` that maps query embeddings to (scores, ids)."""
    embeddings = tf.constant(item_embeddings, tf.float32)
    identifiers = tf.constant(list(item_ids), tf.string)
    k = min(settings.k, len(item_ids))
    if settings.kind == "brute_force":
        return tfrs.layers.factorized_top_k.BruteForce(k=k).index(embeddings, identifiers)
    parameters = settings.resolved_scann(len(item_ids))
    index = tfrs.layers.factorized_top_k.ScaNN(k=k, num_leaves=parameters.num_leaves,
                                               num_leaves_to_search=parameters.num_leaves_to_search,
                                               num_reordering_candidates=parameters.num_reordering_candidates,
                                               dimensions_per_block=parameters.dimensions_per_block)
    # TFRS's layer neither seeds ScaNN nor lets its caller: the searcher it builds is replaced, and
    # its saving and serving are kept.
    index._build_searcher = functools.partial(_seeded_scann_searcher, k=k, parameters=parameters, seed=settings.seed)
    return index.index(embeddings, identifiers)


def _seeded_scann_searcher(candidates: tf.Tensor, k: int, parameters: ScannParameters, seed: int):
    """ScaNN's searcher as TFRS's layer builds it (a k-means tree, 4-bit asymmetric hashing, exact
    re-scoring), except that the leaves' k-means starts from k-means++ and every clustering and
    sample is drawn from `seed`. ScaNN's default random start is seeded from nowhere: the recall
    of one model's index against exact search measured 0.76 to 0.96 over six builds."""
    from google.protobuf import text_format
    from scann.proto import scann_pb2
    from scann.scann_ops.py import scann_ops

    builder = scann_ops.builder(candidates, k, "dot_product")
    builder = builder.tree(num_leaves=parameters.num_leaves, num_leaves_to_search=parameters.num_leaves_to_search,
                           training_iterations=TREE_TRAINING_ITERATIONS, random_init=False)
    builder = builder.score_ah(dimensions_per_block=parameters.dimensions_per_block)
    builder = builder.reorder(parameters.num_reordering_candidates)
    config = text_format.Parse(builder.create_config(), scann_pb2.ScannConfig())
    config.partitioning.clustering_seed = seed
    config.hash.asymmetric_hash.clustering_seed = seed
    config.hash.asymmetric_hash.sampling_seed = seed
    return scann_ops.create_searcher(candidates, text_format.MessageToString(config),
                                     shared_name=f"scann-{uuid.uuid4()}")


def top_k_recall(approximate_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean over rows of |approximate ∩ exact| / K: how much of the exact top-K an index finds."""
    approximate_ids, exact_ids = np.asarray(approximate_ids), np.asarray(exact_ids)
    if approximate_ids.shape != exact_ids.shape:
        raise ValueError(f"shape mismatch: {approximate_ids.shape} vs {exact_ids.shape}")
    overlaps = [len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approximate_ids, exact_ids)]
    return float(np.mean(overlaps) / exact_ids.shape[1])
