"""Reads a prepared dataset: tf.data input pipelines, vocabularies, stats, and eval helpers.

    dataset = PreparedDataset.open(root)
    train = dataset.interactions("train", 1024, shuffle=True, seed=42)
    targets = load_eval_targets(dataset, "valid")      # users, targets and exclusions as CSR
    histories, lengths = dataset.query_histories("valid")

`open` refuses a directory without `manifest.json` (an incomplete build) and any listed file
whose size differs from the manifest (a truncated copy). `verify()` reads every shard and names
the first corrupt one; `explain_data_loss` turns a DataLossError raised while training on
`interactions()` into that DataError, since tf.data's own message does not name the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from tfrs_llmrec.config.loader import config_hash
from tfrs_llmrec.config.schema import DataConfig
from tfrs_llmrec.data import spec
from tfrs_llmrec.data.epochs import TrainingEpochs
from tfrs_llmrec.data.errors import DataError

SHARD_GROUPS = (*spec.SPLITS, "items", "users")
_READ_BATCH = 8192


def prepared_dataset_dir(data_config: DataConfig, output_dir: Union[str, Path]) -> Path:
    """Where ingestion puts the dataset for `data_config`: `<output_dir>/datasets/<dataset>-<hash>`."""
    return Path(output_dir) / "datasets" / f"{data_config.dataset}-{config_hash(data_config)}"


@dataclass(frozen=True)
class CsrRows:
    """Rows of item indices: row i is `indices[indptr[i]:indptr[i + 1]]`."""

    indptr: np.ndarray
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def row(self, i: int) -> np.ndarray:
        return self.indices[self.indptr[i]:self.indptr[i + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)


@dataclass(frozen=True)
class EvalTargets:
    """Who is evaluated on a split, what they should retrieve, and what must not be recommended.

    `users[i]` has targets row i (its items in the split) and exclude row i (its items from
    earlier splits: train for valid; train + valid for test; under split "users" also the held-out
    user's input items). Rows are sorted ascending.
    """

    split: str
    users: np.ndarray
    targets_indptr: np.ndarray
    targets_indices: np.ndarray
    exclude_indptr: np.ndarray
    exclude_indices: np.ndarray

    @property
    def targets(self) -> CsrRows:
        return CsrRows(self.targets_indptr, self.targets_indices)

    @property
    def exclude(self) -> CsrRows:
        return CsrRows(self.exclude_indptr, self.exclude_indices)


@dataclass(frozen=True)
class ItemTable:
    """Item text by item index."""

    ids: List[str]
    titles: List[str]
    genres: List[List[str]]
    descriptions: List[str]


def _rows_from_lengths(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)


def _concat_rows(first: CsrRows, second: CsrRows) -> CsrRows:
    """Row-wise concatenation: row i is first.row(i) followed by second.row(i)."""
    first_lengths, second_lengths = first.lengths(), second.lengths()
    indptr = _rows_from_lengths(first_lengths + second_lengths)
    indices = np.empty(indptr[-1], dtype=np.int64)
    rows_first = np.repeat(np.arange(len(first)), first_lengths)
    rows_second = np.repeat(np.arange(len(second)), second_lengths)
    indices[indptr[rows_first] + np.arange(first.indptr[-1]) - first.indptr[rows_first]] = first.indices
    offsets = indptr[rows_second] + first_lengths[rows_second]
    indices[offsets + np.arange(second.indptr[-1]) - second.indptr[rows_second]] = second.indices
    return CsrRows(indptr, indices)


def select_rows(rows: CsrRows, selected: np.ndarray, sort_within: bool) -> CsrRows:
    lengths = rows.lengths()[selected]
    indptr = _rows_from_lengths(lengths)
    row_ids = np.repeat(np.arange(len(selected)), lengths)
    source = rows.indptr[selected][row_ids] + np.arange(indptr[-1]) - indptr[row_ids]
    indices = rows.indices[source]
    if sort_within and indices.size:
        indices = indices[np.lexsort((indices, row_ids))]
    return CsrRows(indptr, indices)


def _recent_first(rows: CsrRows, max_history: int) -> Tuple[np.ndarray, np.ndarray]:
    """[rows, max_history] of each row's last items, most recent first, padded with PAD_ITEM."""
    lengths = np.minimum(rows.lengths(), max_history).astype(np.int64)
    steps = np.arange(max_history)
    present = steps[None, :] < lengths[:, None]
    histories = np.full((len(rows), max_history), spec.PAD_ITEM, dtype=np.int64)
    # Position j of row i is the row's (j+1)-th item from its end.
    histories[present] = rows.indices[(rows.indptr[1:, None] - 1 - steps[None, :])[present]]
    return histories, lengths


def _read_records(path: str, features: Dict[str, object]):
    """Parsed batches of one TFRecord file; a corrupt file raises DataError naming it."""
    dataset = tf.data.TFRecordDataset(path).batch(_READ_BATCH).map(lambda batch: tf.io.parse_example(batch, features))
    try:
        for batch in dataset:
            yield batch
    except tf.errors.DataLossError as error:
        raise DataError(path, f"corrupt TFRecord shard ({_short(error)})") from None
    except tf.errors.InvalidArgumentError as error:
        raise DataError(path, f"records do not match the feature spec ({_short(error)})") from None


def _short(error: tf.errors.OpError) -> str:
    text = error.message.split("[Op:")[0]
    return text.split("}}")[-1].strip()


class PreparedDataset:
    """One prepared dataset directory (layout in `spec`)."""

    def __init__(self, root: Path, manifest: dict, stats: dict):
        self.root = root
        self.manifest = manifest
        self.stats = stats
        self._timelines: Optional[Dict[str, CsrRows]] = None

    @classmethod
    def open(cls, root: Union[str, Path], check_sizes: bool = True) -> "PreparedDataset":
        root = Path(root)
        if not root.is_dir():
            raise DataError(root, "no prepared dataset here (not a directory)")
        manifest_path = root / spec.MANIFEST_FILE
        if not manifest_path.is_file():
            raise DataError(root, f"incomplete prepared dataset: no {spec.MANIFEST_FILE} (an interrupted "
                                  "ingestion); delete it or rerun ingestion with force")
        manifest = _read_json(manifest_path)
        version = manifest.get("format_version")
        if version != spec.FORMAT_VERSION:
            raise DataError(manifest_path, f"format version {version!r}, this code reads {spec.FORMAT_VERSION}; "
                                           "rerun ingestion with force")
        if check_sizes:
            for relative, entry in manifest.get("files", {}).items():
                path = root / relative
                if not path.is_file():
                    raise DataError(path, "missing (listed in the manifest)")
                size = path.stat().st_size
                if size != entry["size"]:
                    raise DataError(path, f"{size} bytes, the manifest says {entry['size']} "
                                          "(truncated or replaced); rerun ingestion with force")
        stats = _read_json(root / spec.STATS_FILE)
        counts, train = stats.get("item_train_counts"), stats.get("interactions", {}).get("train")
        if counts is not None and train is not None and sum(counts) != train:
            # Popularity, the head/tail split and Pop all read these counts: a mismatch (a build by an
            # older ingestion) would skew them silently.
            raise DataError(root / spec.STATS_FILE, f"item_train_counts sum to {sum(counts)}, but the train split "
                                                    f"has {train} interactions; delete {root} to rebuild it")
        return cls(root, manifest, stats)

    # ------------------------------------------------------------ sizes and stats

    @property
    def num_users(self) -> int:
        return int(self.stats["num_users"])

    @property
    def num_items(self) -> int:
        return int(self.stats["num_items"])

    @property
    def max_history(self) -> int:
        return int(self.stats["max_history"])

    def item_popularity(self) -> np.ndarray:
        """Training interactions per item index."""
        return np.asarray(self.stats["item_train_counts"], dtype=np.int64)

    def item_is_head(self) -> np.ndarray:
        return np.asarray(self.stats["item_is_head"], dtype=bool)

    def user_train_counts(self) -> np.ndarray:
        return np.asarray(self.stats["user_train_counts"], dtype=np.int64)

    def user_is_active(self) -> np.ndarray:
        return np.asarray(self.stats["user_is_active"], dtype=bool)

    def item_ids(self) -> List[str]:
        """Raw item id per item index."""
        return self._vocabulary(spec.ITEM_VOCAB_FILE)

    def user_ids(self) -> List[str]:
        return self._vocabulary(spec.USER_VOCAB_FILE)

    def _vocabulary(self, relative: str) -> List[str]:
        path = self.root / relative
        if not path.is_file():
            raise DataError(path, "missing vocabulary file")
        return path.read_text(encoding="utf-8").splitlines()

    def shard_files(self, group: str) -> List[str]:
        """The TFRecord files of `group`: a split, "items" or "users"."""
        if group not in SHARD_GROUPS:
            raise ValueError(f"unknown shard group {group!r}; expected one of {', '.join(SHARD_GROUPS)}")
        return [str(self.root / relative) for relative in self.manifest["shards"][group]]

    # ------------------------------------------------------------ tf.data

    def interactions(self, split: str, batch_size: int, *, shuffle: bool = False, seed: Optional[int] = None,
                     shuffle_buffer: int = 10_000, repeat: bool = False, drop_remainder: bool = False,
                     input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
        """Batches of interaction features (spec.interaction_features) for `split`.

        `batch_size` is the batch this pipeline yields; under a tf.distribute strategy pass
        `input_context.get_per_replica_batch_size(global_batch)`. With `input_context`, each
        input pipeline reads its own files (or every n-th record when the files do not divide
        evenly, so workers see equal counts).
        """
        files = self.shard_files(spec.split_dir(split))
        features = spec.interaction_features(self.max_history)
        pipelines = input_context.num_input_pipelines if input_context is not None else 1
        pipeline_id = input_context.input_pipeline_id if input_context is not None else 0
        by_file = pipelines > 1 and len(files) % pipelines == 0
        dataset = tf.data.Dataset.from_tensor_slices(files)
        if by_file:
            dataset = dataset.shard(pipelines, pipeline_id)
        if shuffle:
            dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=max(1, min(len(files), 8)),
                                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if pipelines > 1 and not by_file:
            dataset = dataset.shard(pipelines, pipeline_id)
        if shuffle:
            dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if repeat:
            dataset = dataset.repeat()
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
        dataset = dataset.map(lambda serialized: tf.io.parse_example(serialized, features),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return dataset.prefetch(tf.data.AUTOTUNE)

    def training_epochs(self, split: str, global_batch_size: int, seed: int, shuffle_buffer: int) -> TrainingEpochs:
        """Epochs of `split` in a (seed, epoch)-determined order, shardable over replicas."""
        files = self.shard_files(spec.split_dir(split))
        features = spec.interaction_features(self.max_history)
        source = tf.data.Dataset.from_tensor_slices(files).interleave(
            tf.data.TFRecordDataset, cycle_length=max(1, min(len(files), 8)), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True)
        return TrainingEpochs(source, int(self.stats["interactions"][split]), global_batch_size, seed, shuffle_buffer,
                              parse=lambda serialized: tf.io.parse_example(serialized, features))

    def items(self, batch_size: int = 1024) -> tf.data.Dataset:
        """Batches of item features; `genres` is a RaggedTensor of strings."""

        def parse(serialized):
            parsed = tf.io.parse_example(serialized, spec.ITEM_FEATURES)
            parsed[spec.GENRES] = tf.RaggedTensor.from_sparse(parsed[spec.GENRES])
            return parsed

        files = self.shard_files("items")
        return (tf.data.TFRecordDataset(files).batch(batch_size)
                .map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE))

    # ------------------------------------------------------------ integrity

    def verify(self, groups: Sequence[str] = SHARD_GROUPS) -> None:
        """Reads every shard of `groups`; raises DataError naming the first corrupt or short one."""
        expected = self.manifest.get("files", {})
        for group in groups:
            for path in self.shard_files(group):
                count = 0
                try:
                    for batch in tf.data.TFRecordDataset(path).batch(_READ_BATCH):
                        count += int(batch.shape[0])
                except tf.errors.DataLossError as error:
                    raise DataError(path, f"corrupt TFRecord shard ({_short(error)})") from None
                relative = Path(path).relative_to(self.root).as_posix()
                records = expected.get(relative, {}).get("records")
                if records is not None and records != count:
                    raise DataError(path, f"{count} records, the manifest says {records}")

    def explain_data_loss(self, error: tf.errors.DataLossError, split: Optional[str] = None) -> DataError:
        """The DataError naming the shard behind a DataLossError raised while reading this dataset."""
        try:
            self.verify([split] if split else SHARD_GROUPS)
        except DataError as located:
            return located
        return DataError(self.root, f"corrupt TFRecord data in an unknown shard ({_short(error)})")

    # ------------------------------------------------------------ item text

    def item_table(self) -> ItemTable:
        indices, ids, titles, genres, descriptions = [], [], [], [], []
        for path in self.shard_files("items"):
            for batch in _read_records(path, spec.ITEM_FEATURES):
                indices.append(batch[spec.ITEM_INDEX].numpy())
                ids.extend(value.decode("utf-8") for value in batch[spec.ITEM_ID].numpy())
                titles.extend(value.decode("utf-8") for value in batch[spec.TITLE].numpy())
                descriptions.extend(value.decode("utf-8") for value in batch[spec.DESCRIPTION].numpy())
                ragged = tf.RaggedTensor.from_sparse(batch[spec.GENRES]).to_list()
                genres.extend([value.decode("utf-8") for value in row] for row in ragged)
        order = np.argsort(np.concatenate(indices) if indices else np.zeros(0, np.int64), kind="stable")
        if len(order) != self.num_items:
            raise DataError(self.root / spec.ITEMS_DIR, f"{len(order)} item records, expected {self.num_items}")
        return ItemTable([ids[i] for i in order], [titles[i] for i in order], [genres[i] for i in order],
                         [descriptions[i] for i in order])

    # ------------------------------------------------------------ users' items per split

    @property
    def split_method(self) -> str:
        """How the interactions were split (`data.split`): "leave_one_out", "ratio" or "users"."""
        return str(self.stats["split"])

    def split_items(self, split: str) -> CsrRows:
        """Every user's items in `split` (rows by user index), in chronological order."""
        return self._load_timelines()[spec.SPLIT_ITEMS[spec.split_dir(split)]]

    def split_inputs(self, split: str) -> CsrRows:
        """Split "users": every held-out user's input items for `split` ("valid" or "test"), in
        chronological order; rows of the other users (and every row of other splits) are empty."""
        if split not in spec.SPLIT_INPUT_ITEMS:
            raise ValueError(f"expected split 'valid' or 'test', got {split!r}")
        return self._load_timelines()[spec.SPLIT_INPUT_ITEMS[split]]

    def _load_timelines(self) -> Dict[str, CsrRows]:
        """{user feature: rows by user index} for every split's items and the held-out inputs."""
        if self._timelines is not None:
            return self._timelines
        features = [*spec.SPLIT_ITEMS.values(), *spec.SPLIT_INPUT_ITEMS.values()]
        users: List[np.ndarray] = []
        lengths: Dict[str, List[np.ndarray]] = {feature: [] for feature in features}
        values: Dict[str, List[np.ndarray]] = {feature: [] for feature in features}
        for path in self.shard_files("users"):
            for batch in _read_records(path, spec.USER_FEATURES):
                batch_users = batch[spec.USER_INDEX].numpy()
                users.append(batch_users)
                for feature in features:
                    sparse = batch[feature]
                    rows = sparse.indices.numpy()[:, 0]
                    lengths[feature].append(np.bincount(rows, minlength=len(batch_users)).astype(np.int64))
                    values[feature].append(sparse.values.numpy())
        all_users = np.concatenate(users) if users else np.zeros(0, np.int64)
        if not np.array_equal(np.sort(all_users), np.arange(self.num_users)):
            raise DataError(self.root / spec.USERS_DIR, f"user records do not cover user indices 0..{self.num_users - 1}")
        order = np.argsort(all_users, kind="stable")
        timelines = {}
        for feature in features:
            stored = CsrRows(_rows_from_lengths(np.concatenate(lengths[feature]) if lengths[feature] else np.zeros(0)),
                             np.concatenate(values[feature]).astype(np.int64) if values[feature]
                             else np.zeros(0, np.int64))
            timelines[feature] = select_rows(stored, order, sort_within=False)
        self._timelines = timelines
        return self._timelines

    def _items_before(self, split: str) -> CsrRows:
        """Each user's items known before `split`, chronological within each part: valid: train +
        valid inputs; test: train + valid inputs + valid + test inputs (inputs: split "users" only)."""
        if split not in ("valid", "test"):
            raise ValueError(f"expected split 'valid' or 'test', got {split!r}")
        timelines = self._load_timelines()
        before = _concat_rows(timelines[spec.TRAIN_ITEMS], timelines[spec.VALID_INPUT_ITEMS])
        if split == "test":
            before = _concat_rows(before, timelines[spec.VALID_ITEMS])
            before = _concat_rows(before, timelines[spec.TEST_INPUT_ITEMS])
        return before

    def query_histories(self, split: str) -> Tuple[np.ndarray, np.ndarray]:
        """Each user's history as it stands at `split` (valid: train items; test: train + valid;
        under split "users" a held-out user's history is its input items).

        Returns int64 [num_users, max_history] (most recent first, padded with PAD_ITEM) and
        int64 [num_users] lengths: exactly the `history` a split example of that user carries.
        """
        return _recent_first(self._items_before(split), self.max_history)

    def eval_targets(self, split: str) -> EvalTargets:
        """Users with items in `split`, those items, and their earlier items to exclude (under split
        "users", a held-out user's targets are its items after the input and the input is excluded)."""
        earlier = self._items_before(split)
        targets = self.split_items(split)
        users = np.flatnonzero(targets.lengths() > 0).astype(np.int64)
        chosen_targets = select_rows(targets, users, sort_within=True)
        chosen_exclude = select_rows(earlier, users, sort_within=True)
        return EvalTargets(split, users, chosen_targets.indptr, chosen_targets.indices,
                           chosen_exclude.indptr, chosen_exclude.indices)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(path, "missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise DataError(path, f"invalid JSON ({error})") from None


def load_eval_targets(root_or_dataset: Union[str, Path, PreparedDataset], split: str) -> EvalTargets:
    """`PreparedDataset.eval_targets` for a dataset object or its directory."""
    dataset = root_or_dataset if isinstance(root_or_dataset, PreparedDataset) else PreparedDataset.open(root_or_dataset)
    return dataset.eval_targets(split)
