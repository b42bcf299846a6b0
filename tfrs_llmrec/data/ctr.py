"""Reads the CTR samples written by beam_jobs/ctr.py (layout in `ctr_spec`).

    samples = CtrDataset.open(root)
    epochs = samples.training_epochs("train", 1024, seed=42, shuffle_buffer=100_000)
    for batch in samples.batches("valid", 4096): ...        # fixed order, for evaluation
    test = samples.arrays("test")                            # {feature: numpy array} of the split

`open` refuses a directory without `manifest.json` (an interrupted build) and any listed file whose
size differs from the manifest; `explain_data_loss` names the corrupt shard behind a DataLossError
raised while training, since tf.data's own message does not name the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from tfrs_llmrec.config.loader import config_hash, to_dict
from tfrs_llmrec.config.schema import ExperimentConfig
from tfrs_llmrec.data import ctr_spec, spec
from tfrs_llmrec.data.dataset import _read_json, _read_records, _short
from tfrs_llmrec.data.epochs import TrainingEpochs
from tfrs_llmrec.data.errors import DataError

PathLike = Union[str, Path]


def features_config_hash(features_dir: PathLike) -> str:
    """The config hash recorded by the features job; a features directory without a manifest is
    incomplete and refused."""
    manifest_path = Path(features_dir) / spec.MANIFEST_FILE
    if not manifest_path.is_file():
        raise DataError(features_dir, "incomplete semantic features (no manifest.json); rerun `llmrec features`")
    return str(_read_json(manifest_path)["features_config_hash"])


def ctr_config_hash(config: ExperimentConfig, features_hash: str,
                    user_attributes_path: Optional[PathLike] = None) -> str:
    """Everything besides the prepared dataset (named by the directory) that changes the samples:
    the ctr section, the features (item clusters), the seed (negatives), the data options used
    for bad rows and head/active flags, and an explicitly given user-attribute file."""
    data = config.data
    return config_hash({
        "ctr": to_dict(config.ctr), "features": features_hash, "seed": config.seed,
        "data": {"bad_rows": data.bad_rows, "max_bad_rows": data.max_bad_rows, "head_fraction": data.head_fraction,
                 "active_user_fraction": data.active_user_fraction},
        "user_attributes": str(user_attributes_path) if user_attributes_path is not None else None,
    })


def ctr_samples_dir(config: ExperimentConfig, dataset_dir: PathLike, features_dir: PathLike, output_dir: PathLike,
                    user_attributes_path: Optional[PathLike] = None) -> Path:
    """`<output_dir>/ctr/<prepared dataset root name>-<ctr_config_hash>`."""
    digest = ctr_config_hash(config, features_config_hash(features_dir), user_attributes_path)
    return Path(output_dir) / ctr_spec.CTR_DIR / f"{Path(dataset_dir).name}-{digest}"


class CtrDataset:
    """One CTR samples directory."""

    def __init__(self, root: Path, manifest: dict, stats: dict):
        self.root = root
        self.manifest = manifest
        self.stats = stats

    @classmethod
    def open(cls, root: PathLike, check_sizes: bool = True) -> "CtrDataset":
        root = Path(root)
        if not root.is_dir():
            raise DataError(root, "no CTR samples here (not a directory)")
        manifest_path = root / spec.MANIFEST_FILE
        if not manifest_path.is_file():
            raise DataError(root, f"incomplete CTR samples: no {spec.MANIFEST_FILE} (an interrupted build); "
                                  "delete it or rerun the ctr stage")
        manifest = _read_json(manifest_path)
        if check_sizes:
            for relative, entry in manifest.get("files", {}).items():
                path = root / relative
                if not path.is_file():
                    raise DataError(path, "missing (listed in the manifest)")
                if path.stat().st_size != entry["size"]:
                    raise DataError(path, f"{path.stat().st_size} bytes, the manifest says {entry['size']} "
                                          "(truncated or replaced); rerun the ctr stage with force")
        return cls(root, manifest, _read_json(root / spec.STATS_FILE))

    # ------------------------------------------------------------ shapes and stats

    @property
    def max_history(self) -> int:
        return int(self.manifest["max_history"])

    @property
    def max_genres(self) -> int:
        return int(self.manifest["max_genres"])

    @property
    def activity_buckets(self) -> int:
        return int(self.manifest["activity_buckets"])

    @property
    def attributes(self) -> Dict[str, int]:
        """Vocabulary size (0 = unknown included) of age, gender, occupation, genres and year."""
        return dict(self.manifest["attributes"])

    @property
    def num_users(self) -> int:
        return int(self.manifest["num_users"])

    @property
    def num_items(self) -> int:
        return int(self.manifest["num_items"])

    def num_examples(self, split: str) -> int:
        return int(self.manifest["counts"][spec.split_dir(split)])

    def item_train_impressions(self) -> np.ndarray:
        return np.asarray(self.stats[ctr_spec.ITEM_TRAIN_IMPRESSIONS], np.int64)

    def user_train_impressions(self) -> np.ndarray:
        return np.asarray(self.stats[ctr_spec.USER_TRAIN_IMPRESSIONS], np.int64)

    def item_is_head(self) -> np.ndarray:
        return np.asarray(self.stats[ctr_spec.ITEM_IS_HEAD], bool)

    def user_is_active(self) -> np.ndarray:
        return np.asarray(self.stats[ctr_spec.USER_IS_ACTIVE], bool)

    def features(self) -> Dict[str, tf.io.FixedLenFeature]:
        return ctr_spec.example_features(self.max_history, self.max_genres)

    def shard_files(self, split: str) -> List[str]:
        return [str(self.root / relative) for relative in self.manifest["shards"][spec.split_dir(split)]]

    # ------------------------------------------------------------ tf.data

    def _parse(self, serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
        return tf.io.parse_example(serialized, self.features())

    def training_epochs(self, split: str, global_batch_size: int, seed: int, shuffle_buffer: int) -> TrainingEpochs:
        """Epochs of `split` in a (seed, epoch)-determined order, shardable over replicas."""
        files = self.shard_files(split)
        source = tf.data.Dataset.from_tensor_slices(files).interleave(
            tf.data.TFRecordDataset, cycle_length=max(1, min(len(files), 8)), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True)
        return TrainingEpochs(source, self.num_examples(split), global_batch_size, seed, shuffle_buffer,
                              parse=self._parse)

    def batches(self, split: str, batch_size: int) -> tf.data.Dataset:
        """Parsed batches of `split`, every example once, always in the same order (shard by shard)."""
        return (tf.data.TFRecordDataset(self.shard_files(split)).batch(batch_size)
                .map(self._parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .prefetch(tf.data.AUTOTUNE))

    def arrays(self, split: str) -> Dict[str, np.ndarray]:
        """The whole split as numpy arrays (the order of `batches`); a corrupt shard raises DataError."""
        features = self.features()
        columns: Dict[str, list] = {name: [] for name in features}
        for path in self.shard_files(split):
            for batch in _read_records(path, features):
                for name in features:
                    columns[name].append(batch[name].numpy())
        return {name: np.concatenate(parts) if parts else np.zeros((0, *features[name].shape),
                                                                      features[name].dtype.as_numpy_dtype)
                for name, parts in columns.items()}

    # ------------------------------------------------------------ integrity

    def check_labels(self, split: str) -> None:
        """Raises DataError naming the shard and record when a record of `split` has no label or one
        other than 0 or 1 (a CTR label is a click or not)."""
        for path in self.shard_files(split):
            offset = 0
            for batch in _read_records(path, {spec.LABEL: tf.io.FixedLenFeature([], tf.float32)}):
                labels = batch[spec.LABEL].numpy()
                bad = np.flatnonzero((labels != 0.0) & (labels != 1.0))
                if bad.size:
                    raise DataError(path, f"record {offset + int(bad[0])}: label {float(labels[bad[0]])!r} is not 0 or 1")
                offset += len(labels)

    def verify(self, splits: Sequence[str] = spec.SPLITS) -> None:
        """Reads every shard of `splits`; raises DataError naming the first corrupt or short one."""
        for split in splits:
            for path in self.shard_files(split):
                count = 0
                try:
                    for batch in tf.data.TFRecordDataset(path).batch(8192):
                        count += int(batch.shape[0])
                except tf.errors.DataLossError as error:
                    raise DataError(path, f"corrupt TFRecord shard ({_short(error)})") from None
                records = self.manifest["files"].get(Path(path).relative_to(self.root).as_posix(), {}).get("records")
                if records is not None and records != count:
                    raise DataError(path, f"{count} records, the manifest says {records}")

    def explain_data_loss(self, error: tf.errors.DataLossError, split: Optional[str] = None) -> DataError:
        """The DataError naming the shard behind a DataLossError raised while reading these samples."""
        try:
            self.verify([split] if split else spec.SPLITS)
        except DataError as located:
            return located
        return DataError(self.root, f"corrupt TFRecord data in an unknown shard ({_short(error)})")
