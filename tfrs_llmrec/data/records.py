"""Builds the serialized tf.train.Examples of the on-disk contract (the writer side of spec.py)."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from tfrs_llmrec.data import spec


def _int64s(values: Sequence[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _floats(values: Sequence[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _strings(values: Sequence[str]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8") for value in values]))


def _serialize(features: dict) -> bytes:
    # Deterministic serialization orders the feature map, so reruns write identical bytes.
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString(deterministic=True)


def padded_history(recent_first: Sequence[int], max_history: int) -> list:
    """The most recent `max_history` items (most recent first), padded with PAD_ITEM."""
    kept = list(recent_first[:max_history])
    return kept + [spec.PAD_ITEM] * (max_history - len(kept))


def interaction_example(user_index: int, item_index: int, timestamp: int, label: float,
                        history_recent_first: Sequence[int], max_history: int) -> bytes:
    history = padded_history(history_recent_first, max_history)
    return _serialize({
        spec.USER_INDEX: _int64s([user_index]),
        spec.ITEM_INDEX: _int64s([item_index]),
        spec.TIMESTAMP: _int64s([timestamp]),
        spec.LABEL: _floats([label]),
        spec.HISTORY: _int64s(history),
        spec.HISTORY_LENGTH: _int64s([min(len(history_recent_first), max_history)]),
    })


def item_example(item_index: int, item_id: str, title: str, genres: Sequence[str], description: str) -> bytes:
    return _serialize({
        spec.ITEM_INDEX: _int64s([item_index]),
        spec.ITEM_ID: _strings([item_id]),
        spec.TITLE: _strings([title]),
        spec.GENRES: _strings(list(genres)),
        spec.DESCRIPTION: _strings([description]),
    })


def user_example(user_index: int, user_id: str, train_items: Sequence[int], valid_items: Sequence[int],
                 test_items: Sequence[int]) -> bytes:
    return _serialize({
        spec.USER_INDEX: _int64s([user_index]),
        spec.USER_ID: _strings([user_id]),
        spec.TRAIN_ITEMS: _int64s(list(train_items)),
        spec.VALID_ITEMS: _int64s(list(valid_items)),
        spec.TEST_ITEMS: _int64s(list(test_items)),
    })
