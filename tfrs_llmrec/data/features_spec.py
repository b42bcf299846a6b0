"""The on-disk contract of semantic features, written by beam_jobs/features.py.

A features directory sits beside the prepared dataset it was computed from and, like it, is
renamed into place only when complete:

    <root>/manifest.json        encoder identity, LLM backend/model/prompt versions, RQ-VAE stats,
                                dataset config hash, features config hash; written last
    <root>/items/items-SSSSS-of-NNNNN.tfrecord    one Example per item (item_features(d, L))
    <root>/users/users-SSSSS-of-NNNNN.tfrecord    one Example per user (user_features(d, L, M))
    <root>/rqvae_items/, rqvae_users/             the quantisers' checkpoints

Vectors are L2-normalised float32 of the encoder's dimension `d`. An item has a vector for each
semantic source: its title alone, its title with metadata (genres, description), and its
LLM-generated purchase motivations when an LLM backend produced them (`has_motivation`).
"""

from __future__ import annotations

from typing import Dict

import tensorflow as tf

from tfrs_llmrec.data.spec import ITEM_INDEX, USER_INDEX

FEATURES_DIR = "features"
ITEMS_SUBDIR = "items"
USERS_SUBDIR = "users"

TITLE_VECTOR = "title_vector"
METADATA_VECTOR = "metadata_vector"
MOTIVATION_VECTOR = "motivation_vector"
HAS_MOTIVATION = "has_motivation"
SEMANTIC_ID = "semantic_id"
TEXT_SHA256 = "text_sha256"

HISTORY_VECTOR = "history_vector"
INTERESTS = "interests"
NUM_INTERESTS = "num_interests"

SEMANTIC_SOURCES = {"title": TITLE_VECTOR, "metadata": METADATA_VECTOR, "motivation": MOTIVATION_VECTOR}


def item_features(dimension: int, sid_levels: int) -> Dict[str, tf.io.FixedLenFeature]:
    return {
        ITEM_INDEX: tf.io.FixedLenFeature([], tf.int64),
        TITLE_VECTOR: tf.io.FixedLenFeature([dimension], tf.float32),
        METADATA_VECTOR: tf.io.FixedLenFeature([dimension], tf.float32),
        MOTIVATION_VECTOR: tf.io.FixedLenFeature([dimension], tf.float32),
        HAS_MOTIVATION: tf.io.FixedLenFeature([], tf.int64),
        SEMANTIC_ID: tf.io.FixedLenFeature([sid_levels], tf.int64),
        TEXT_SHA256: tf.io.FixedLenFeature([], tf.string),
    }


def user_features(dimension: int, sid_levels: int) -> Dict[str, object]:
    return {
        USER_INDEX: tf.io.FixedLenFeature([], tf.int64),
        HISTORY_VECTOR: tf.io.FixedLenFeature([dimension], tf.float32),
        # num_interests x dimension, row-major (at most max_interests rows; none when
        # features.llm.interests_source is "llm" without an LLM backend).
        INTERESTS: tf.io.VarLenFeature(tf.float32),
        NUM_INTERESTS: tf.io.FixedLenFeature([], tf.int64),
        SEMANTIC_ID: tf.io.FixedLenFeature([sid_levels], tf.int64),
    }
