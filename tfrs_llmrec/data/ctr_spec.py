"""The on-disk contract of CTR samples, written by beam_jobs/ctr.py and read by tfrs_llmrec.data.ctr.

A CTR dataset is derived from one prepared dataset (its vocabularies, item texts and timestamped,
labelled interactions) and that dataset's semantic features (the items' top-level semantic IDs);
like them it is one directory renamed into place only when complete:

    <root>/manifest.json     written last: every file with its record count, the source dataset and
                             features directories and config hashes, the CTR config, the attributes
    <root>/stats.json        impressions, positives and positive rate per split, bad rows, negatives
                             sampled, per-item and per-user training impressions, head/tail flags
    <root>/<split>/part-SSSSS-of-NNNNN.tfrecord   one Example per impression (example_features(...))

Indices are the prepared dataset's user and item indices. An impression's label is 1.0 (click) or
0.0; `rating` is the raw rating where the source has ratings, else the label. `history` holds the
user's positively-labelled items strictly before the impression (all splits), most recent first,
cut to max_history and padded with PAD_ITEM. Categorical attributes are indices with 0 meaning
unknown or absent; their vocabulary sizes (0 included) are in the manifest's "attributes".
Activity features are log2 buckets of counts over the training split only:
bucket(0) = 0, bucket(1) = 1, bucket(2..3) = 2, bucket(4..7) = 3, ..., capped at activity_buckets - 1.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import tensorflow as tf

from tfrs_llmrec.data.spec import HISTORY, HISTORY_LENGTH, ITEM_INDEX, LABEL, TIMESTAMP, USER_INDEX

CTR_DIR = "ctr"
RATING = "rating"
# User attributes, [NUM_USER_ATTRIBUTES] int64: age bucket, gender, occupation (zeros without them).
USER_ATTRIBUTES = "user_attributes"
USER_ATTRIBUTE_NAMES = ("age", "gender", "occupation")
# Item attributes: genres as [max_genres] int64 padded with 0, release-year bucket int64.
ITEM_GENRES = "item_genres"
ITEM_YEAR = "item_year"
# The item's top-level semantic ID (its cluster); the cross activity counts the user's training
# impressions of items in the candidate's cluster.
ITEM_CLUSTER = "item_cluster"
# Scoring-time only (never in the samples): a candidate's RQ-VAE semantic ID, [levels] int64 with
# -1 where unknown; lets AKT-Rec place an item it never saw in its semantic cluster.
ITEM_SEMANTIC_ID = "item_semantic_id"
USER_ACTIVITY = "user_activity"
ITEM_ACTIVITY = "item_activity"
CROSS_ACTIVITY = "cross_activity"
ACTIVITY_FEATURES = (USER_ACTIVITY, ITEM_ACTIVITY, CROSS_ACTIVITY)

# stats.json keys read by the evaluator (lists indexed by item / user index).
ITEM_TRAIN_IMPRESSIONS = "item_train_impressions"
USER_TRAIN_IMPRESSIONS = "user_train_impressions"
ITEM_IS_HEAD = "item_is_head"
USER_IS_ACTIVE = "user_is_active"


def activity_bucket(counts, num_buckets: int) -> np.ndarray:
    """log2 buckets of non-negative counts (see the module docstring)."""
    counts = np.asarray(counts, np.int64)
    if np.any(counts < 0):
        raise ValueError("counts must be non-negative")
    buckets = np.where(counts > 0, np.floor(np.log2(np.maximum(counts, 1))).astype(np.int64) + 1, 0)
    return np.minimum(buckets, num_buckets - 1)


def example_features(max_history: int, max_genres: int) -> Dict[str, tf.io.FixedLenFeature]:
    """Parsing spec of one impression."""
    return {
        USER_INDEX: tf.io.FixedLenFeature([], tf.int64),
        ITEM_INDEX: tf.io.FixedLenFeature([], tf.int64),
        TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
        LABEL: tf.io.FixedLenFeature([], tf.float32),
        RATING: tf.io.FixedLenFeature([], tf.float32),
        HISTORY: tf.io.FixedLenFeature([max_history], tf.int64),
        HISTORY_LENGTH: tf.io.FixedLenFeature([], tf.int64),
        USER_ATTRIBUTES: tf.io.FixedLenFeature([len(USER_ATTRIBUTE_NAMES)], tf.int64),
        ITEM_GENRES: tf.io.FixedLenFeature([max_genres], tf.int64),
        ITEM_YEAR: tf.io.FixedLenFeature([], tf.int64),
        ITEM_CLUSTER: tf.io.FixedLenFeature([], tf.int64),
        USER_ACTIVITY: tf.io.FixedLenFeature([], tf.int64),
        ITEM_ACTIVITY: tf.io.FixedLenFeature([], tf.int64),
        CROSS_ACTIVITY: tf.io.FixedLenFeature([], tf.int64),
    }
