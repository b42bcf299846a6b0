"""The on-disk contract between the Beam ingestion job (writer) and tf.data readers.

A prepared dataset is one directory, renamed into place only when complete:

    <root>/manifest.json                 written last; lists every file, the config hash, counts
    <root>/stats.json                    counts, sparsity, popularity, head/tail assignments
    <root>/vocab/user_ids.txt            raw user id per line; line i is user index i
    <root>/vocab/item_ids.txt            raw item id per line; line i is item index i
    <root>/items/items-SSSSS-of-NNNNN.tfrecord    one Example per item (ITEM_FEATURES)
    <root>/<split>/part-SSSSS-of-NNNNN.tfrecord   one Example per interaction (INTERACTION_FEATURES)

Splits are `train`, `valid`, `test`. An interaction's `history` holds the user's earlier items
of the splits before it (for `valid`: all train items; for `test`: train + valid), most recent
first, truncated to `max_history` and padded with PAD_ITEM.

How interactions reach the splits depends on `data.split` (recorded in stats.json "split"):

  leave_one_out, ratio   every user's chronological timeline is cut into train, valid and test.
  users                  (EIMF's / ComiRec's protocol) the users are divided into train, valid and
                         test groups. A train user's whole timeline is in `train` (each record's
                         history: its earlier items). A valid (test) user has no train items: the
                         first `holdout_input_fraction` of its timeline is its INPUT, stored only
                         in its user record (`valid_input_items` / `test_input_items`), never in an
                         interaction shard; each remaining item is one `valid` (`test`) record
                         whose history is the input, most recent first.

The user records (USER_FEATURES, below) hold each user's items per split and, under `users`, the
held-out users' inputs, all chronological. The input features are written only when non-empty;
a missing key parses as empty, so datasets written before they existed read unchanged. What a
split's evaluation excludes and queries with is the user's items before it:
`valid`: train + valid inputs; `test`: train + valid inputs + valid + test inputs (for
leave_one_out and ratio the inputs are empty, so: train, and train + valid).
"""

from __future__ import annotations

from typing import Dict

from tfrs_llmrec._keras_env import use_legacy_keras

use_legacy_keras()

import tensorflow as tf  # noqa: E402

PAD_ITEM = -1
SPLITS = ("train", "valid", "test")
MANIFEST_FILE = "manifest.json"
STATS_FILE = "stats.json"
USER_VOCAB_FILE = "vocab/user_ids.txt"
ITEM_VOCAB_FILE = "vocab/item_ids.txt"
ITEMS_DIR = "items"

USER_INDEX = "user_index"
ITEM_INDEX = "item_index"
TIMESTAMP = "timestamp"
LABEL = "label"
HISTORY = "history"
HISTORY_LENGTH = "history_length"

ITEM_ID = "item_id"
TITLE = "title"
GENRES = "genres"
DESCRIPTION = "description"


def interaction_features(max_history: int) -> Dict[str, tf.io.FixedLenFeature]:
    return {
        USER_INDEX: tf.io.FixedLenFeature([], tf.int64),
        ITEM_INDEX: tf.io.FixedLenFeature([], tf.int64),
        TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
        LABEL: tf.io.FixedLenFeature([], tf.float32, default_value=1.0),
        HISTORY: tf.io.FixedLenFeature([max_history], tf.int64),
        HISTORY_LENGTH: tf.io.FixedLenFeature([], tf.int64),
    }


ITEM_FEATURES = {
    ITEM_INDEX: tf.io.FixedLenFeature([], tf.int64),
    ITEM_ID: tf.io.FixedLenFeature([], tf.string),
    TITLE: tf.io.FixedLenFeature([], tf.string, default_value=""),
    GENRES: tf.io.VarLenFeature(tf.string),
    DESCRIPTION: tf.io.FixedLenFeature([], tf.string, default_value=""),
}


def shard_name(prefix: str, index: int, count: int) -> str:
    return f"{prefix}-{index:05d}-of-{count:05d}.tfrecord"


# Additions for the eval helpers: one Example per user holding the user's items of each split
# in chronological order, so targets, exclusions and query histories need no scan of the logs.
#     <root>/users/users-SSSSS-of-NNNNN.tfrecord  one Example per user (USER_FEATURES)
FORMAT_VERSION = 1
INTERACTIONS_PREFIX = "part"
ITEMS_PREFIX = "items"
USERS_DIR = "users"
USERS_PREFIX = "users"
USER_ID = "user_id"
TRAIN_ITEMS = "train_items"
VALID_ITEMS = "valid_items"
TEST_ITEMS = "test_items"
SPLIT_ITEMS = {"train": TRAIN_ITEMS, "valid": VALID_ITEMS, "test": TEST_ITEMS}
# Split "users": a held-out user's input items (chronological); empty for everyone else.
VALID_INPUT_ITEMS = "valid_input_items"
TEST_INPUT_ITEMS = "test_input_items"
SPLIT_INPUT_ITEMS = {"valid": VALID_INPUT_ITEMS, "test": TEST_INPUT_ITEMS}

USER_FEATURES = {
    USER_INDEX: tf.io.FixedLenFeature([], tf.int64),
    USER_ID: tf.io.FixedLenFeature([], tf.string),
    TRAIN_ITEMS: tf.io.VarLenFeature(tf.int64),
    VALID_ITEMS: tf.io.VarLenFeature(tf.int64),
    TEST_ITEMS: tf.io.VarLenFeature(tf.int64),
    VALID_INPUT_ITEMS: tf.io.VarLenFeature(tf.int64),
    TEST_INPUT_ITEMS: tf.io.VarLenFeature(tf.int64),
}


def split_dir(split: str) -> str:
    """The directory, relative to the dataset root, holding a split's interaction shards."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return split
