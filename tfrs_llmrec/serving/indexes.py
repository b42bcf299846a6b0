"""Top-K index layers over item embeddings (TFRS BruteForce and ScaNN) and how to set them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs


@dataclass(frozen=True)
class IndexSettings:
    kind: Literal["brute_force", "scann"]
    k: int
    num_leaves: Optional[int] = None
    num_leaves_to_search: Optional[int] = None

    def resolved_leaves(self, num_items: int) -> tuple:
        """About sqrt(N) partitions; search enough of them to hold about 10 x K items, and at
        least a fifth, unless configured."""
        leaves = self.num_leaves or max(1, min(num_items, round(math.sqrt(num_items))))
        wanted_fraction = max(0.2, min(1.0, 10.0 * self.k / max(num_items, 1)))
        to_search = self.num_leaves_to_search or max(1, math.ceil(leaves * wanted_fraction))
        return leaves, min(to_search, leaves)


def build_index(settings: IndexSettings, item_embeddings: np.ndarray, item_ids: Sequence[str]) -> tf.keras.layers.Layer:
    """A TFRS top-K layer over `item_embeddings` that maps query embeddings to (scores, ids)."""
    embeddings = tf.constant(item_embeddings, tf.float32)
    identifiers = tf.constant(list(item_ids), tf.string)
    k = min(settings.k, len(item_ids))
    if settings.kind == "brute_force":
        return tfrs.layers.factorized_top_k.BruteForce(k=k).index(embeddings, identifiers)
    leaves, to_search = settings.resolved_leaves(len(item_ids))
    index = tfrs.layers.factorized_top_k.ScaNN(k=k, num_leaves=leaves, num_leaves_to_search=to_search,
                                               num_reordering_candidates=max(4 * k, 100))
    return index.index(embeddings, identifiers)


def top_k_recall(approximate_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean over rows of |approximate ∩ exact| / K: how much of the exact top-K an index finds."""
    approximate_ids, exact_ids = np.asarray(approximate_ids), np.asarray(exact_ids)
    if approximate_ids.shape != exact_ids.shape:
        raise ValueError(f"shape mismatch: {approximate_ids.shape} vs {exact_ids.shape}")
    overlaps = [len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approximate_ids, exact_ids)]
    return float(np.mean(overlaps) / exact_ids.shape[1])
