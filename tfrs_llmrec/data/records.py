"""Builds the serialized tf.train.Examples of the on-disk contract (the writer side of spec.py)."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from tfrs_llmrec.data import spec


def int64s(values: Sequence[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def floats(values: Sequence[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def strings(values: Sequence[str]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8") for value in values]))


def serialize(features: dict) -> bytes:
    # Deterministic serialization orders the feature map, so reruns write identical bytes.
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString(deterministic=True)


def padded_history(recent_first: Sequence[int], max_history: int) -> list:
    """The most recent `max_history` items (most recent first), padded with PAD_ITEM."""
    kept = list(recent_first[:max_history])
    return kept + [spec.PAD_ITEM] * (max_history - len(kept))


def interaction_example(user_index: int, item_index: int, timestamp: int, label: float,
                        history_recent_first: Sequence[int], max_history: int) -> bytes:
    history = padded_history(history_recent_first, max_history)
    return serialize({
        spec.USER_INDEX: int64s([user_index]),
        spec.ITEM_INDEX: int64s([item_index]),
        spec.TIMESTAMP: int64s([timestamp]),
        spec.LABEL: floats([label]),
        spec.HISTORY: int64s(history),
        spec.HISTORY_LENGTH: int64s([min(len(history_recent_first), max_history)]),
    })


def item_example(item_index: int, item_id: str, title: str, genres: Sequence[str], description: str) -> bytes:
    return serialize({
        spec.ITEM_INDEX: int64s([item_index]),
        spec.ITEM_ID: strings([item_id]),
        spec.TITLE: strings([title]),
        spec.GENRES: strings(list(genres)),
        spec.DESCRIPTION: strings([description]),
    })


def user_example(user_index: int, user_id: str, train_items: Sequence[int], valid_items: Sequence[int],
                 test_items: Sequence[int], valid_input_items: Sequence[int] = (),
                 test_input_items: Sequence[int] = ()) -> bytes:
    features = {
        spec.USER_INDEX: int64s([user_index]),
        spec.USER_ID: strings([user_id]),
        spec.TRAIN_ITEMS: int64s(list(train_items)),
        spec.VALID_ITEMS: int64s(list(valid_items)),
        spec.TEST_ITEMS: int64s(list(test_items)),
    }
    # Held-out users' inputs (split "users") are written only when present: a missing key parses
    # as empty, and every other record stays byte-identical to the format without them.
    for feature, items in ((spec.VALID_INPUT_ITEMS, valid_input_items), (spec.TEST_INPUT_ITEMS, test_input_items)):
        if len(items):
            features[feature] = int64s(list(items))
    return serialize(features)
