"""Synthetic CTR impressions for the ranker tests: users and items fall into clusters, and a user
clicks the items of their own cluster; the behaviour sequence holds earlier clicks."""

import numpy as np
import tensorflow as tf

from tfrs_llmrec.data import ctr_spec
from tfrs_llmrec.data.spec import HISTORY, HISTORY_LENGTH, ITEM_INDEX, LABEL, PAD_ITEM, TIMESTAMP, USER_INDEX
from tfrs_llmrec.models.rankers import CtrInputs

NUM_USERS, NUM_ITEMS, NUM_CLUSTERS, MAX_HISTORY, MAX_GENRES, SEMANTIC_DIM = 40, 60, 4, 6, 2, 8
ATTRIBUTES = {"age": 8, "gender": 3, "occupation": 22, "genres": 5, "year": 4}
BUCKETS = 6


def item_cluster(items):
    return np.asarray(items) % NUM_CLUSTERS


def user_cluster(users):
    return np.asarray(users) % NUM_CLUSTERS


def ctr_inputs(has_ratings=False, seed=0):
    rng = np.random.default_rng(seed)
    item_vectors = rng.normal(size=(NUM_ITEMS, SEMANTIC_DIM)).astype(np.float32)
    # The semantic vector carries the cluster, as a language model's would carry the topic.
    item_vectors[:, :NUM_CLUSTERS] += 3.0 * np.eye(NUM_CLUSTERS, dtype=np.float32)[item_cluster(np.arange(NUM_ITEMS))]
    impressions = rng.integers(0, 50, NUM_ITEMS)
    # Items 0..11 are head (most impressions); the rest tail.
    impressions[:12] += 100
    users = rng.integers(1, 40, NUM_USERS)
    return CtrInputs(
        num_users=NUM_USERS, num_items=NUM_ITEMS, attribute_sizes=ATTRIBUTES, activity_buckets=BUCKETS,
        has_ratings=has_ratings, item_is_head=impressions >= 100, user_is_active=users >= 30,
        item_activity=ctr_spec.activity_bucket(impressions, BUCKETS),
        user_activity=ctr_spec.activity_bucket(users, BUCKETS), item_vectors=item_vectors,
        item_semantic_ids=np.stack([item_cluster(np.arange(NUM_ITEMS)), np.arange(NUM_ITEMS) % 7], axis=1),
        user_semantic_ids=np.stack([user_cluster(np.arange(NUM_USERS)), np.arange(NUM_USERS) % 3], axis=1))


def impressions(size, seed=0):
    """A batch dict of `size` impressions; label = the item is in the user's cluster."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, NUM_USERS, size)
    items = rng.integers(0, NUM_ITEMS, size)
    labels = (item_cluster(items) == user_cluster(users)).astype(np.float32)
    lengths = rng.integers(0, MAX_HISTORY + 1, size)
    history = np.full((size, MAX_HISTORY), PAD_ITEM, np.int64)
    for row in range(size):
        own = np.flatnonzero(item_cluster(np.arange(NUM_ITEMS)) == user_cluster(users[row]))
        history[row, :lengths[row]] = rng.choice(own, lengths[row])
    cross = rng.integers(0, BUCKETS, size)
    batch = {
        USER_INDEX: users, ITEM_INDEX: items, TIMESTAMP: np.arange(size), LABEL: labels,
        ctr_spec.RATING: labels * 4.0 + 1.0 + rng.normal(0, 0.1, size).astype(np.float32),
        HISTORY: history, HISTORY_LENGTH: lengths,
        ctr_spec.USER_ATTRIBUTES: np.stack([users % 8, users % 3, users % 22], axis=1),
        ctr_spec.ITEM_GENRES: np.stack([items % 5, np.zeros(size, np.int64)], axis=1),
        ctr_spec.ITEM_YEAR: items % 4, ctr_spec.ITEM_CLUSTER: item_cluster(items),
        ctr_spec.USER_ACTIVITY: rng.integers(0, BUCKETS, size), ctr_spec.ITEM_ACTIVITY: rng.integers(0, BUCKETS, size),
        ctr_spec.CROSS_ACTIVITY: cross,
    }
    return {key: tf.constant(value, tf.float32 if key in (LABEL, ctr_spec.RATING) else tf.int64)
            for key, value in batch.items()}
