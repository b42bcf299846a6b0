"""Reads the semantic features written by beam_jobs/features.py, aligned to item/user indices."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Union

import numpy as np
import tensorflow as tf

from tfrs_llmrec.data import features_spec as fspec
from tfrs_llmrec.data import spec
from tfrs_llmrec.data.errors import DataError


@dataclass
class SemanticFeatures:
    root: Path
    manifest: dict
    item_vectors: Dict[str, np.ndarray]  # semantic source -> float32 [num_items, d]
    has_motivation: np.ndarray  # bool [num_items]
    item_semantic_ids: np.ndarray  # int64 [num_items, levels]
    user_history_vectors: np.ndarray  # float32 [num_users, d]
    user_interests: np.ndarray  # float32 [num_users, max_interests, d]
    user_num_interests: np.ndarray  # int64 [num_users]
    user_semantic_ids: np.ndarray  # int64 [num_users, levels]

    @classmethod
    def open(cls, root: Union[str, Path]) -> "SemanticFeatures":
        root = Path(root)
        manifest_path = root / spec.MANIFEST_FILE
        if not manifest_path.is_file():
            raise DataError(root, "incomplete semantic features (no manifest.json); rerun `llmrec features`")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        dimension, num_items, num_users = manifest["dimension"], manifest["num_items"], manifest["num_users"]
        max_interests = manifest["llm"]["max_interests"]
        items = _read_all(root / fspec.ITEMS_SUBDIR, fspec.item_features(dimension, manifest["item_sid_levels"]),
                          spec.ITEM_INDEX, num_items)
        users = _read_all(root / fspec.USERS_SUBDIR, fspec.user_features(dimension, manifest["user_sid_levels"]),
                          spec.USER_INDEX, num_users, padded={fspec.INTERESTS: max_interests * dimension})
        return cls(
            root=root, manifest=manifest,
            item_vectors={source: items[name] for source, name in fspec.SEMANTIC_SOURCES.items()},
            has_motivation=items[fspec.HAS_MOTIVATION].astype(bool),
            item_semantic_ids=items[fspec.SEMANTIC_ID],
            user_history_vectors=users[fspec.HISTORY_VECTOR],
            user_interests=users[fspec.INTERESTS].reshape(num_users, max_interests, dimension),
            user_num_interests=users[fspec.NUM_INTERESTS],
            user_semantic_ids=users[fspec.SEMANTIC_ID])


def _read_all(directory: Path, features: dict, index_key: str, expected: int,
              padded: Dict[str, int] = None) -> Dict[str, np.ndarray]:
    """Every row of the shards, sorted by `index_key`; variable-length features are zero-padded
    to the width given in `padded`."""
    padded = padded or {}
    files = sorted(str(path) for path in directory.glob("*.tfrecord"))
    if not files:
        raise DataError(directory, "no TFRecord shards")
    columns: Dict[str, list] = {name: [] for name in features}
    for path in files:
        try:
            for batch in tf.data.TFRecordDataset(path).batch(4096).map(
                    lambda serialized: tf.io.parse_example(serialized, features)):
                for name in features:
                    value = batch[name]
                    if isinstance(value, tf.SparseTensor):
                        value = tf.sparse.to_dense(tf.sparse.reset_shape(
                            value, [value.dense_shape[0], padded[name]]))
                    columns[name].append(value.numpy())
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
            raise DataError(path, f"corrupt feature shard ({error.message.splitlines()[0]})") from None
    merged = {name: np.concatenate(parts) for name, parts in columns.items()}
    order = np.argsort(merged[index_key], kind="stable")
    if len(order) != expected or not np.array_equal(merged[index_key][order], np.arange(expected)):
        raise DataError(directory, f"{len(order)} rows, expected one per index 0..{expected - 1}")
    return {name: values[order] for name, values in merged.items()}
