"""Collaborative-aware item vectors before quantisation (AKT-Rec's Eq. 1).

A language model places items by wording; two items bought by the same people may be far apart.
A linear map of the frozen vectors is trained with InfoNCE on item co-occurrence pairs (items
next to each other in a user's training timeline: each pair's items are positives of each other,
the batch's other items negatives), so that RQ-VAE clusters group items users consume together.
The map starts at the identity, so a few epochs only bend the language space, not replace it.

`cluster_pair_agreement` measures what a clustering captures of co-occurrence: the share of pairs
whose two items fall in the same cluster, next to what random clusters of the same sizes give.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np
import tensorflow as tf

from tfrs_llmrec.config.schema import CollaborativeProjectionConfig
from tfrs_llmrec.losses.info_nce import info_nce_loss


def co_occurrence_pairs(timelines_indptr: np.ndarray, timelines_indices: np.ndarray) -> np.ndarray:
    """[P, 2] (item, next item) of every user's chronological training timeline (CSR rows), without
    self-pairs."""
    indptr, items = np.asarray(timelines_indptr, np.int64), np.asarray(timelines_indices, np.int64)
    if items.size < 2:
        return np.zeros((0, 2), np.int64)
    last_of_row = np.zeros(items.size, bool)
    last_of_row[indptr[1:][indptr[1:] > 0] - 1] = True
    starts = np.flatnonzero(~last_of_row[:-1])
    pairs = np.stack([items[starts], items[starts + 1]], axis=1)
    return pairs[pairs[:, 0] != pairs[:, 1]]


def cluster_pair_agreement(clusters: np.ndarray, pairs: np.ndarray) -> Dict[str, float]:
    """Share of `pairs` whose items share a cluster, and its expectation under random clusters of
    the same sizes (the sum of squared cluster shares over the paired items)."""
    clusters = np.asarray(clusters)
    if len(pairs) == 0:
        return {"same_cluster": float("nan"), "random_baseline": float("nan")}
    same = float(np.mean(clusters[pairs[:, 0]] == clusters[pairs[:, 1]]))
    _, counts = np.unique(clusters[pairs.reshape(-1)], return_counts=True)
    shares = counts / counts.sum()
    return {"same_cluster": same, "random_baseline": float(np.sum(shares ** 2))}


@dataclass
class ProjectionResult:
    vectors: np.ndarray  # [I, d] L2-normalised projected vectors
    stats: dict


def _mean_pair_cosine(vectors: np.ndarray, pairs: np.ndarray) -> float:
    normalized = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return float(np.mean(np.sum(normalized[pairs[:, 0]] * normalized[pairs[:, 1]], axis=1)))


def collaborative_projection(vectors: np.ndarray, pairs: np.ndarray, config: CollaborativeProjectionConfig,
                             seed: int) -> ProjectionResult:
    """Trains the identity-initialised linear map on 90% of `pairs` (the rest measure it) and returns
    every item's projected, L2-normalised vector."""
    vectors = np.asarray(vectors, np.float32)
    train, held_out = held_out_pairs(pairs, seed)
    held_out_count = len(held_out)
    if len(train) == 0:
        raise ValueError("no co-occurrence pairs to train the collaborative projection on")
    dimension = vectors.shape[1]
    kernel = tf.Variable(np.eye(dimension, dtype=np.float32), name="collaborative_projection")
    table = tf.constant(vectors)
    optimizer = tf.keras.optimizers.Adam(config.learning_rate)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            left = tf.matmul(tf.gather(table, batch[:, 0]), kernel)
            right = tf.matmul(tf.gather(table, batch[:, 1]), kernel)
            # Symmetric: each side is the other's positive; the batch's other items are negatives.
            loss = 0.5 * (info_nce_loss(left, right, temperature=config.temperature, positive_ids=batch[:, 1])
                          + info_nce_loss(right, left, temperature=config.temperature, positive_ids=batch[:, 0]))
        optimizer.apply_gradients([(tape.gradient(loss, kernel), kernel)])
        return loss

    losses = []
    for epoch in range(config.epochs):
        shuffled = train[np.random.default_rng([seed, epoch]).permutation(len(train))]
        epoch_losses = [float(step(tf.constant(shuffled[start:start + config.batch_size])))
                        for start in range(0, len(shuffled) - config.batch_size + 1, config.batch_size)]
        losses.append(float(np.mean(epoch_losses)) if epoch_losses else float("nan"))
    projected = vectors @ kernel.numpy()
    projected /= np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12)
    stats = {"pairs": int(len(pairs)), "held_out_pairs": int(held_out_count), "loss_per_epoch": losses}
    if held_out_count:
        stats["held_out_pair_cosine"] = {"before": _mean_pair_cosine(vectors, held_out),
                                         "after": _mean_pair_cosine(projected, held_out)}
    return ProjectionResult(projected.astype(np.float32), stats)


def held_out_pairs(pairs: np.ndarray, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(train pairs, held-out pairs) as `collaborative_projection` splits them."""
    order = np.random.default_rng(seed).permutation(len(pairs))
    held_out_count = max(1, len(pairs) // 10) if len(pairs) >= 10 else 0
    return pairs[order[held_out_count:]], pairs[order[:held_out_count]]
