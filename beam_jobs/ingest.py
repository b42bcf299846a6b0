"""Beam ingestion: raw logs -> k-core, vocabularies, chronological splits, sharded TFRecords, stats.

`run_ingestion` builds a prepared dataset (layout in `tfrs_llmrec.data.spec`) under
`<output_dir>/datasets/<dataset>-<config hash>`, or reuses it when it is already complete. It
builds into `<target>.partial-<uuid>` and renames that into place only after the pipeline,
`stats.json` and (last) `manifest.json` are written, so a killed run never leaves a
complete-looking directory; the next run removes stale partial directories.

The pipeline, all Beam transforms so it runs on any runner:
  read + parse (one DoFn per file, bad rows fail or are counted) -> group by user, dedupe
  (user, item) keeping the earliest -> k-core rounds (item degrees by a global combine, users
  pruned in place) -> (split "users": users shorter than data.min_sequence_length dropped) ->
  sorted vocabularies (split "users": + the users' train/valid/test groups, from the sorted user
  vocabulary, see `assign_user_groups`) -> per-user split and histories -> deterministic shards
  (sorted within each shard, so reruns are byte-identical) + item and user tables + a summary the
  driver turns into stats.json.
Beam's own WriteToTFRecord spreads records over shards at random, which would break
byte-identical reruns, hence the small shard writer here.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import hashlib
import json
import logging
import math
import os
import shutil
import socket
import time
import uuid
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.pvalue import AsDict, AsList, AsSingleton, TaggedOutput

from tfrs_llmrec.atomic_files import publish_directory
from tfrs_llmrec.config.loader import config_hash, to_dict
from tfrs_llmrec.config.schema import DataConfig
from tfrs_llmrec.data import records, spec
from tfrs_llmrec.data.adapters import (ItemText, RowProblem, SourceAdapter, Table, adapter_for, describe_bytes,
                                       file_size)
from tfrs_llmrec.data.dataset import prepared_dataset_dir
from tfrs_llmrec.data.errors import DataError, find_data_error

log = logging.getLogger("beam_jobs.ingest")

DEFAULT_RUNNER = "FnApiRunner"  # DirectRunner would try to download Prism from the network
PARTIAL_MARKER = ".partial-"
OWNER_FILE = "_owner.json"
SUMMARY_FILE = "_summary.json"
# A partial directory from another host is only presumed dead after this long.
FOREIGN_PARTIAL_MAX_AGE_S = 24 * 3600
BAD_ROW_SAMPLES = 5


# ---------------------------------------------------------------- pure helpers (tested directly)


def id_sort_key(raw_id: str) -> Tuple:
    """Integer-looking ids sort numerically, then all others as text: "2" < "10" < "a"."""
    stripped = raw_id.lstrip("-")
    if stripped.isdigit() and stripped.isascii():
        return (0, int(raw_id), raw_id)
    return (1, 0, raw_id)


def split_sizes(count: int, method: str, ratios: Sequence[float]) -> Tuple[int, int, int]:
    """(train, valid, test) sizes of a user's chronological timeline of `count` interactions."""
    if method == "leave_one_out":
        return (count - 2, 1, 1) if count >= 3 else (count, 0, 0)
    # Cut points rounded half up, then clamped so train keeps at least one interaction.
    train_end = max(1, min(count, math.floor(count * ratios[0] + 0.5 + 1e-9)))
    valid_end = max(train_end, min(count, math.floor(count * (ratios[0] + ratios[1]) + 0.5 + 1e-9)))
    return train_end, valid_end - train_end, count - valid_end


def user_group_sizes(count: int, ratios: Sequence[float]) -> Tuple[int, int, int]:
    """Split "users": (train, valid, test) numbers of users among `count`.

    Cut points floor(count * ratio[0]) and floor(count * (ratio[0] + ratio[1])) (as ComiRec's
    int()), clamped, once there are at least 3 users, so that every group keeps one user.
    """
    train_end = math.floor(count * ratios[0] + 1e-9)
    valid_end = math.floor(count * (ratios[0] + ratios[1]) + 1e-9)
    if count >= 3:
        train_end = max(1, min(count - 2, train_end))
        valid_end = max(train_end + 1, min(count - 1, valid_end))
    else:
        train_end = max(min(count, 1), min(count, train_end))
        valid_end = max(train_end, min(count, valid_end))
    return train_end, valid_end - train_end, count - valid_end


def input_cut(count: int, fraction: float) -> int:
    """Split "users": how many of a held-out user's `count` chronological items are input:
    floor(count * fraction), clamped to [1, count - 1] so there is one input and one target."""
    return max(1, min(count - 1, math.floor(count * fraction + 1e-9)))


def user_rank_key(seed: int, raw_id: str) -> Tuple:
    """Where a user ranks in the seeded order of split "users": a hash of (seed, raw id), so the
    order depends on neither Beam's element order nor the vocabulary."""
    return hashlib.sha256(f"{seed}\x00{raw_id}".encode("utf-8")).digest(), id_sort_key(raw_id)


def assign_user_groups(user_ids: Sequence[str], seed: int, ratios: Sequence[float]) -> Dict[str, str]:
    """{raw user id: "train" | "valid" | "test"}: users ranked by `user_rank_key`, the first
    `user_group_sizes` of them train, then valid, then test."""
    ranked = sorted(user_ids, key=lambda raw_id: user_rank_key(seed, raw_id))
    num_train, num_valid, _ = user_group_sizes(len(ranked), ratios)
    return {raw_id: ("train" if rank < num_train else "valid" if rank < num_train + num_valid else "test")
            for rank, raw_id in enumerate(ranked)}


def top_fraction_flags(counts: np.ndarray, fraction: float) -> Tuple[np.ndarray, int]:
    """Flags the top `fraction` (at least one) of entries by count, ties broken by lower index.

    Returns the flags and the smallest count among flagged entries.
    """
    if counts.size == 0:
        return np.zeros(0, dtype=bool), 0
    order = np.lexsort((np.arange(counts.size), -counts))
    chosen = max(1, min(counts.size, int(math.floor(fraction * counts.size + 1e-9))))
    flags = np.zeros(counts.size, dtype=bool)
    flags[order[:chosen]] = True
    return flags, int(counts[order[chosen - 1]])


def shard_of(user_index: int, position: int, num_shards: int) -> int:
    return zlib.crc32(f"{user_index}:{position}".encode("ascii")) % num_shards


# ---------------------------------------------------------------- DoFns and CombineFns


class _ReadInteractions(beam.DoFn):
    """One input file -> (user, (timestamp, item, label)); bad rows fail or go to BAD_ROWS."""

    BAD_ROWS = "bad_rows"
    COUNTS = "counts"

    def __init__(self, adapter: SourceAdapter, bad_rows: str, min_rating: Optional[float]):
        self._adapter = adapter
        self._fail_on_bad_rows = bad_rows == "error"
        self._min_rating = min_rating

    def process(self, table: Table):
        started = time.perf_counter()
        rows = interactions = below = 0
        for number, result in self._adapter.read_interactions(table):
            rows += 1
            if isinstance(result, RowProblem):
                if self._fail_on_bad_rows:
                    raise DataError(table.path, result.detail, line=number)
                yield TaggedOutput(self.BAD_ROWS, (result.reason, table.path, number, result.detail))
                continue
            for user, item, timestamp, label in result:
                interactions += 1
                if self._min_rating is not None and label < self._min_rating:
                    below += 1
                    continue
                yield user, (timestamp, item, label)
        log.info("read %s: %d rows, %d interactions (%.1fs)", table.path, rows, interactions,
                 time.perf_counter() - started)
        for key, value in (("raw_rows", rows), ("raw_interactions", interactions), ("below_min_rating", below)):
            yield TaggedOutput(self.COUNTS, (key, value))


class _ReadItems(beam.DoFn):
    """One item file -> (item id, (file order, line, ItemText))."""

    BAD_ROWS = "bad_rows"

    def __init__(self, adapter: SourceAdapter, bad_rows: str):
        self._adapter = adapter
        self._fail_on_bad_rows = bad_rows == "error"

    def process(self, numbered_table: Tuple[int, Table]):
        order, table = numbered_table
        for number, result in self._adapter.read_items(table):
            if isinstance(result, RowProblem):
                if self._fail_on_bad_rows:
                    raise DataError(table.path, result.detail, line=number)
                yield TaggedOutput(self.BAD_ROWS, (f"item_{result.reason}", table.path, number, result.detail))
                continue
            yield result.item_id, (order, number, result)


def _dedupe_user(element, duplicates_tag: str):
    """Keeps each (user, item) pair once, at its earliest timestamp."""
    user, events = element
    earliest: Dict[str, Tuple[float, float]] = {}
    total = 0
    for timestamp, item, label in events:
        total += 1
        seen = earliest.get(item)
        if seen is None or (timestamp, label) < seen:
            earliest[item] = (timestamp, label)
    if total > len(earliest):
        yield TaggedOutput(duplicates_tag, total - len(earliest))
    yield user, [(timestamp, item, label) for item, (timestamp, label) in earliest.items()]


class _ItemCounter(beam.CombineFn):
    """Counts items in a Counter; subclasses say what to count and what to return."""

    def create_accumulator(self):
        return collections.Counter()

    def merge_accumulators(self, accumulators):
        merged = collections.Counter()
        for counts in accumulators:
            merged.update(counts)
        return merged


class _LowDegreeItems(_ItemCounter):
    """The items that appear in fewer than k of the users' timelines."""

    def __init__(self, k: int):
        self._k = k

    def add_input(self, counts, element):
        counts.update(item for _, item, _ in element[1])
        return counts

    def extract_output(self, counts):
        return frozenset(item for item, count in counts.items() if count < self._k)


class _PruneUsers(beam.DoFn):
    """Drops low-degree items from a timeline, then the user if fewer than k interactions remain."""

    REMOVED = "removed"

    def __init__(self, k: int):
        self._k = k

    def process(self, element, low_items):
        user, timeline = element
        kept = [event for event in timeline if event[1] not in low_items] if low_items else timeline
        if len(kept) >= self._k:
            if len(kept) < len(timeline):
                yield TaggedOutput(self.REMOVED, (len(timeline) - len(kept), 0))
            yield user, kept
        else:
            yield TaggedOutput(self.REMOVED, (len(timeline), 1))


class _SumPairs(beam.CombineFn):
    def create_accumulator(self):
        return (0, 0)

    def add_input(self, total, pair):
        return total[0] + pair[0], total[1] + pair[1]

    def merge_accumulators(self, totals):
        return tuple(sum(values) for values in zip(*totals)) if totals else (0, 0)

    def extract_output(self, total):
        return list(total)


class _SortedIds(beam.CombineFn):
    """All distinct ids, sorted by `id_sort_key`: the vocabulary, line i being index i."""

    def __init__(self, from_timelines: bool):
        self._from_timelines = from_timelines

    def create_accumulator(self):
        return set()

    def add_input(self, ids, element):
        if self._from_timelines:
            ids.update(item for _, item, _ in element[1])
        else:
            ids.add(element)
        return ids

    def merge_accumulators(self, accumulators):
        merged = set()
        for ids in accumulators:
            merged |= ids
        return merged

    def extract_output(self, ids):
        return sorted(ids, key=id_sort_key)


class _CountItems(_ItemCounter):
    """{item index: training interactions} from lists of training item indices."""

    def add_input(self, counts, item_indices):
        counts.update(item_indices)
        return counts

    def extract_output(self, counts):
        return dict(counts)


class _BuildExamples(beam.DoFn):
    """A user's deduped timeline -> split interaction Examples with histories, and a user Example.

    Split "users": a train user's whole timeline is train; a held-out user's first `input_cut`
    items are its input (kept in its user Example only) and each later item is one record of its
    group's split, whose history is the input.
    """

    USERS = "users"
    USER_COUNTS = "user_counts"
    TRAIN_ITEMS = "train_item_indices"

    def __init__(self, split: str, ratios: Sequence[float], max_history: int, num_shards: int,
                 input_fraction: float = 0.8):
        self._split = split
        self._ratios = list(ratios)
        self._max_history = max_history
        self._num_shards = num_shards
        self._input_fraction = input_fraction

    def process(self, element, user_vocab, item_vocab, user_groups):
        user, timeline = element
        user_index = user_vocab[user]
        # Chronological; same-time events ordered by item index so every run agrees.
        events = sorted((timestamp, item_vocab[item], label) for timestamp, item, label in timeline)
        items = [item for _, item, _ in events]
        history_limit = self._max_history
        group = user_groups[user] if self._split == "users" else "train"
        inputs = {"valid": [], "test": []}
        start = 0  # items before the split records: a held-out user's input
        if group != "train":  # a held-out user of split "users": no train items, the rest in its group
            start = input_cut(len(items), self._input_fraction)
            inputs[group] = items[:start]
            num_train, num_valid = 0, (len(items) - start if group == "valid" else 0)
        elif self._split == "users":
            num_train, num_valid = len(items), 0
        else:
            num_train, num_valid, _ = split_sizes(len(events), self._split, self._ratios)
        valid_start, test_start = start + num_train, start + num_train + num_valid
        train_items, valid_items, test_items = items[start:valid_start], items[valid_start:test_start], items[test_start:]
        # What is known before each split, in the order the reader's `_items_before` concatenates it.
        known = {"valid": train_items + inputs["valid"],
                 "test": train_items + inputs["valid"] + valid_items + inputs["test"]}
        for position in range(start, len(events)):
            timestamp, item, label = events[position]
            if position < valid_start:
                split, earlier = "train", items[max(start, position - history_limit):position]
            else:
                split = "valid" if position < test_start else "test"
                earlier = known[split][-history_limit:]
            example = records.interaction_example(user_index, item, int(math.floor(timestamp)), label,
                                                  earlier[::-1], history_limit)
            shard = shard_of(user_index, position, self._num_shards)
            yield TaggedOutput(split, (shard, ((user_index, position), example)))
        user_record = records.user_example(user_index, user, train_items, valid_items, test_items,
                                           inputs["valid"], inputs["test"])
        yield TaggedOutput(self.USERS, (user_index % self._num_shards, (user_index, user_record)))
        yield TaggedOutput(self.USER_COUNTS, (user_index, len(train_items), len(valid_items), len(test_items),
                                              len(inputs["valid"]), len(inputs["test"])))
        yield TaggedOutput(self.TRAIN_ITEMS, train_items)


def _user_groups(user_ids: List[str], split: str, seed: int, ratios: Sequence[float]) -> Dict[str, str]:
    return assign_user_groups(user_ids, seed, ratios) if split == "users" else {}


class _BuildItemExamples(beam.DoFn):
    """Joins the item vocabulary with item texts: one Example per kept item (text or not)."""

    WITHOUT_TEXT = "without_text"

    def __init__(self, num_shards: int):
        self._num_shards = num_shards

    def process(self, joined):
        item_id, groups = joined
        # Items with text but no interactions left after k-core have no index and are skipped.
        for index in list(groups["index"])[:1]:
            texts = sorted(groups["text"], key=lambda entry: entry[:2])  # first row wins when repeated
            if texts:
                text = texts[0][2]
            else:
                text = ItemText(item_id)
                yield TaggedOutput(self.WITHOUT_TEXT, 1)
            example = records.item_example(index, item_id, text.title, text.genres, text.description)
            yield index % self._num_shards, (index, example)


class _WriteShard(beam.DoFn):
    """Writes one shard, its records sorted by key; yields (relative path, record count)."""

    def __init__(self, root: str, directory: str, prefix: str, num_shards: int):
        self._root = root
        self._directory = directory
        self._prefix = prefix
        self._num_shards = num_shards

    def process(self, keyed):
        shard, values = keyed
        entries = sorted(value for value in values if value is not None)
        relative = f"{self._directory}/{spec.shard_name(self._prefix, shard, self._num_shards)}"
        path = f"{self._root}/{relative}"
        tf.io.gfile.makedirs(f"{self._root}/{self._directory}")
        with tf.io.TFRecordWriter(path) as writer:
            for _, serialized in entries:
                writer.write(serialized)
        log.info("wrote %s: %d records", relative, len(entries))
        yield relative, len(entries)


class _WriteLines(beam.DoFn):
    def __init__(self, path: str):
        self._path = path

    def process(self, lines: List[str]):
        tf.io.gfile.makedirs(os.path.dirname(self._path))
        with tf.io.gfile.GFile(self._path, "w") as handle:
            handle.write("".join(f"{line}\n" for line in lines))
        yield len(lines)


def _summarize(_, counts, bad_reasons, bad_samples, duplicates, kcore_rounds, users_before, items_before,
               user_vocab_size, item_vocab_size, user_counts, item_train_counts, shard_files, without_text,
               short_sequences):
    user_train = [0] * user_vocab_size
    user_valid = [0] * user_vocab_size
    user_test = [0] * user_vocab_size
    user_valid_inputs = [0] * user_vocab_size
    user_test_inputs = [0] * user_vocab_size
    for user_index, num_train, num_valid, num_test, num_valid_inputs, num_test_inputs in user_counts:
        user_train[user_index], user_valid[user_index], user_test[user_index] = num_train, num_valid, num_test
        user_valid_inputs[user_index], user_test_inputs[user_index] = num_valid_inputs, num_test_inputs
    item_train = [0] * item_vocab_size
    for item_index, count in item_train_counts.items():
        item_train[item_index] = count
    return {
        "counts": dict(counts),
        "bad_rows": dict(bad_reasons),
        "bad_row_samples": [list(sample) for sample in bad_samples],
        "duplicates": duplicates,
        "kcore_rounds": [kcore_rounds[index] for index in sorted(kcore_rounds)],
        "users_before_kcore": users_before,
        "items_before_kcore": items_before,
        "num_users": user_vocab_size,
        "num_items": item_vocab_size,
        "user_train_counts": user_train,
        "user_valid_counts": user_valid,
        "user_test_counts": user_test,
        "user_valid_input_counts": user_valid_inputs,
        "user_test_input_counts": user_test_inputs,
        "item_train_counts": item_train,
        "files": {path: count for path, count in shard_files},
        "items_without_text": without_text,
        "short_sequences": list(short_sequences),
    }


class WriteJson(beam.DoFn):
    """Writes its one input as JSON to `path` (the pipeline's summary for the driver)."""

    def __init__(self, path: str):
        self._path = path

    def process(self, payload):
        with tf.io.gfile.GFile(self._path, "w") as handle:
            handle.write(json.dumps(payload))
        yield self._path


# ---------------------------------------------------------------- the pipeline


def write_shards(pipeline, label: str, keyed, root: str, directory: str, prefix: str, num_shards: int):
    # Markers make every shard exist, even an empty one, so the shard count is always num_shards.
    markers = pipeline | f"{label}ShardMarkers" >> beam.Create([(shard, None) for shard in range(num_shards)])
    return ((keyed, markers) | f"{label}WithMarkers" >> beam.Flatten()
            | f"{label}ByShard" >> beam.GroupByKey()
            | f"{label}Write" >> beam.ParDo(_WriteShard(root, directory, prefix, num_shards)))


def _count(pcollection, label: str):
    return pcollection | label >> beam.combiners.Count.Globally()


def build_pipeline(pipeline, adapter: SourceAdapter, config: DataConfig, root: str) -> None:
    """Adds the ingestion transforms to `pipeline`; outputs land under `root`."""
    interaction_tables = adapter.interaction_tables()
    item_tables = adapter.item_tables()
    num_shards = config.num_shards

    read = (pipeline
            | "InteractionFiles" >> beam.Create(interaction_tables)
            | "ReadInteractions" >> beam.ParDo(_ReadInteractions(adapter, config.bad_rows, config.min_rating))
            .with_outputs(_ReadInteractions.BAD_ROWS, _ReadInteractions.COUNTS, main="rows"))
    item_text = (pipeline
                 | "ItemFiles" >> beam.Create(list(enumerate(item_tables)))
                 | "ReadItems" >> beam.ParDo(_ReadItems(adapter, config.bad_rows))
                 .with_outputs(_ReadItems.BAD_ROWS, main="items"))
    bad_rows = ((read[_ReadInteractions.BAD_ROWS], item_text[_ReadItems.BAD_ROWS])
                | "AllBadRows" >> beam.Flatten())
    bad_reasons = (bad_rows | "BadRowReason" >> beam.Map(lambda bad: bad[0])
                   | "CountBadRows" >> beam.combiners.Count.PerElement())
    bad_samples = (bad_rows | "BadRowLocation" >> beam.Map(lambda bad: (bad[1], bad[2], bad[3], bad[0]))
                   | "FirstBadRows" >> beam.combiners.Top.Smallest(BAD_ROW_SAMPLES))
    counts = read[_ReadInteractions.COUNTS] | "SumCounts" >> beam.CombinePerKey(sum)

    deduped = (read.rows
               | "GroupByUser" >> beam.GroupByKey()
               | "Dedupe" >> beam.FlatMap(_dedupe_user, "duplicates").with_outputs("duplicates", main="timelines"))
    duplicates = deduped.duplicates | "SumDuplicates" >> beam.CombineGlobally(sum)
    timelines = deduped.timelines
    users_before = _count(timelines, "CountUsersBeforeKcore")
    items_before = (timelines | "ItemsBeforeKcore" >> beam.CombineGlobally(_SortedIds(from_timelines=True))
                    | "CountItemsBeforeKcore" >> beam.Map(len))

    # k-core: a fixed number of rounds (a Beam graph cannot loop); rounds after convergence
    # remove nothing and cost one small combine each.
    round_removals = []
    if config.k_core > 1:
        for round_index in range(config.max_kcore_rounds):
            low_items = timelines | f"KcoreLowItems{round_index}" >> beam.CombineGlobally(
                _LowDegreeItems(config.k_core))
            pruned = timelines | f"KcorePrune{round_index}" >> beam.ParDo(
                _PruneUsers(config.k_core), AsSingleton(low_items)).with_outputs(_PruneUsers.REMOVED, main="kept")
            removed = (pruned[_PruneUsers.REMOVED] | f"KcoreRemoved{round_index}" >> beam.CombineGlobally(_SumPairs())
                       | f"KcoreRound{round_index}" >> beam.Map(lambda total, index=round_index: (index, total)))
            round_removals.append(removed)
            timelines = pruned.kept
    kcore_rounds = (tuple(round_removals) | "AllKcoreRounds" >> beam.Flatten()) if round_removals else (
        pipeline | "NoKcoreRounds" >> beam.Create([]))

    # Split "users": a held-out user needs one input and one target, so shorter users go (after
    # k-core, before the vocabularies, so indices and groups cover exactly the kept users).
    if config.split == "users":
        long_enough = timelines | "DropShortSequences" >> beam.ParDo(
            _PruneUsers(config.min_sequence_length), frozenset()).with_outputs(_PruneUsers.REMOVED, main="kept")
        short_sequences = long_enough[_PruneUsers.REMOVED] | "SumShortSequences" >> beam.CombineGlobally(_SumPairs())
        timelines = long_enough.kept
    else:
        short_sequences = pipeline | "NoShortSequences" >> beam.Create([[0, 0]])

    user_ids = (timelines | "UserIds" >> beam.Keys()
                | "UserVocabulary" >> beam.CombineGlobally(_SortedIds(from_timelines=False)))
    item_ids = timelines | "ItemVocabulary" >> beam.CombineGlobally(_SortedIds(from_timelines=True))
    user_ids | "WriteUserVocabulary" >> beam.ParDo(_WriteLines(f"{root}/{spec.USER_VOCAB_FILE}"))
    item_ids | "WriteItemVocabulary" >> beam.ParDo(_WriteLines(f"{root}/{spec.ITEM_VOCAB_FILE}"))
    user_lookup = user_ids | "UserLookup" >> beam.Map(lambda ids: {raw: index for index, raw in enumerate(ids)})
    item_lookup = item_ids | "ItemLookup" >> beam.Map(lambda ids: {raw: index for index, raw in enumerate(ids)})

    user_groups = user_ids | "UserGroups" >> beam.Map(_user_groups, config.split, config.split_seed,
                                                      list(config.split_ratios))

    examples = (timelines | "BuildExamples" >> beam.ParDo(
        _BuildExamples(config.split, config.split_ratios, config.max_history, num_shards,
                       config.holdout_input_fraction),
        AsSingleton(user_lookup), AsSingleton(item_lookup), AsSingleton(user_groups))
        .with_outputs(*spec.SPLITS, _BuildExamples.USERS, _BuildExamples.USER_COUNTS, _BuildExamples.TRAIN_ITEMS))

    item_indices = item_ids | "ItemIndices" >> beam.FlatMap(lambda ids: ((raw, index) for index, raw in enumerate(ids)))
    items = ({"index": item_indices, "text": item_text.items} | "JoinItemText" >> beam.CoGroupByKey()
             | "BuildItemExamples" >> beam.ParDo(_BuildItemExamples(num_shards))
             .with_output_types(Tuple[int, Any]).with_outputs(_BuildItemExamples.WITHOUT_TEXT, main="examples"))
    without_text = items[_BuildItemExamples.WITHOUT_TEXT] | "CountWithoutText" >> beam.CombineGlobally(sum)

    written = [write_shards(pipeline, split.capitalize(), examples[split], root, spec.split_dir(split),
                             spec.INTERACTIONS_PREFIX, num_shards) for split in spec.SPLITS]
    written.append(write_shards(pipeline, "Items", items.examples, root, spec.ITEMS_DIR, spec.ITEMS_PREFIX,
                                 num_shards))
    written.append(write_shards(pipeline, "Users", examples[_BuildExamples.USERS], root, spec.USERS_DIR,
                                 spec.USERS_PREFIX, num_shards))
    shard_files = tuple(written) | "AllShards" >> beam.Flatten()

    item_train_counts = examples[_BuildExamples.TRAIN_ITEMS] | "CountTrainItems" >> beam.CombineGlobally(_CountItems())
    (pipeline
     | "SummarySeed" >> beam.Create([None])
     | "Summarize" >> beam.Map(
            _summarize, counts=AsDict(counts), bad_reasons=AsDict(bad_reasons), bad_samples=AsSingleton(bad_samples),
            duplicates=AsSingleton(duplicates), kcore_rounds=AsDict(kcore_rounds),
            users_before=AsSingleton(users_before), items_before=AsSingleton(items_before),
            user_vocab_size=AsSingleton(user_ids | "CountUserIds" >> beam.Map(len)),
            item_vocab_size=AsSingleton(item_ids | "CountItemIds" >> beam.Map(len)),
            user_counts=AsList(examples[_BuildExamples.USER_COUNTS]),
            item_train_counts=AsSingleton(item_train_counts), shard_files=AsList(shard_files),
            without_text=AsSingleton(without_text), short_sequences=AsSingleton(short_sequences))
     | "WriteSummary" >> beam.ParDo(WriteJson(f"{root}/{SUMMARY_FILE}")))


# ---------------------------------------------------------------- the driver


def pipeline_options(pipeline_args: Sequence[str]) -> PipelineOptions:
    options = PipelineOptions(list(pipeline_args))
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = DEFAULT_RUNNER
    return options


class _DropDataErrorTracebacks(logging.Filter):
    """Beam logs a worker's exception with its traceback before re-raising it; a DataError is
    reported once, in one line, by whoever catches it, so its traceback log is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, DataError) and not isinstance(record.msg, DataError)


@contextlib.contextmanager
def _quiet_data_error_tracebacks():
    beam_logger = logging.getLogger("apache_beam.runners.common")
    quiet = _DropDataErrorTracebacks()
    beam_logger.addFilter(quiet)
    try:
        yield
    finally:
        beam_logger.removeFilter(quiet)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_partial(target: Path) -> Path:
    """A fresh `<target>.partial-<id>/` directory, marked as this process's (see remove_stale_partials)."""
    partial = target.with_name(f"{target.name}{PARTIAL_MARKER}{uuid.uuid4().hex[:12]}")
    partial.mkdir()
    try:
        (partial / OWNER_FILE).write_text(json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}), encoding="utf-8")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return partial


def run_pipeline(pipeline_args: Sequence[str], what: str, partial: Path, build: Callable[[Any], None]) -> None:
    """Runs the Beam pipeline that `build(pipeline)` fills, writing into `partial`; a DataError raised
    inside a worker comes out as itself (its file and line), not wrapped in Beam's error."""
    options = pipeline_options(pipeline_args)
    log.info("running the %s pipeline (runner %s) into %s", what, options.view_as(StandardOptions).runner, partial)
    try:
        with _quiet_data_error_tracebacks(), beam.Pipeline(options=options) as pipeline:
            build(pipeline)
    except Exception as error:
        found = find_data_error(error)
        if found is not None:
            raise found from None
        raise


def remove_stale_partials(target: Path) -> None:
    """Removes partial builds of `target` whose process is gone (killed runs)."""
    for partial in sorted(target.parent.glob(f"{target.name}{PARTIAL_MARKER}*")):
        owner_path = partial / OWNER_FILE
        try:
            owner = json.loads(owner_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            owner = {}
        age = time.time() - partial.stat().st_mtime
        if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int):
            stale = not _process_alive(owner["pid"])
        else:
            stale = age > FOREIGN_PARTIAL_MAX_AGE_S
        if stale:
            log.info("removing the stale partial build %s", partial)
            shutil.rmtree(partial, ignore_errors=True)
        else:
            log.warning("another ingestion seems to be building %s (%s); building separately", target, partial)


def files_with_sizes(root: Path, record_counts: Dict[str, int]) -> Dict[str, dict]:
    """Every output file under `root` with its size, and its record count where known (manifests)."""
    files = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and relative not in (OWNER_FILE, SUMMARY_FILE, spec.MANIFEST_FILE):
            entry = {"size": path.stat().st_size}
            if relative in record_counts:
                entry["records"] = record_counts[relative]
            files[relative] = entry
    return files


def _build_stats(summary: dict, config: DataConfig, digest: str, seconds: float) -> dict:
    item_train = np.asarray(summary["item_train_counts"], dtype=np.int64)
    user_train = np.asarray(summary["user_train_counts"], dtype=np.int64)
    user_valid = np.asarray(summary["user_valid_counts"], dtype=np.int64)
    user_test = np.asarray(summary["user_test_counts"], dtype=np.int64)
    user_valid_inputs = np.asarray(summary["user_valid_input_counts"], dtype=np.int64)
    user_test_inputs = np.asarray(summary["user_test_input_counts"], dtype=np.int64)
    users_split = config.split == "users"
    item_is_head, head_min = top_fraction_flags(item_train, config.head_fraction)
    # Activity from what is known of each user: its train items, or (a held-out user of split
    # "users", which has none) its input items. Elsewhere the inputs are empty: train items only.
    user_known = user_train + user_valid_inputs + user_test_inputs
    user_is_active, active_min = top_fraction_flags(user_known, config.active_user_fraction)
    interactions = {"train": int(user_train.sum()), "valid": int(user_valid.sum()), "test": int(user_test.sum())}
    input_interactions = {"valid": int(user_valid_inputs.sum()), "test": int(user_test_inputs.sum())}
    # Every kept interaction: the split records plus the held-out users' inputs (split "users").
    total = sum(interactions.values()) + sum(input_interactions.values())
    short_interactions, short_users = summary["short_sequences"]
    num_users, num_items = summary["num_users"], summary["num_items"]
    counts = summary["counts"]
    rounds = summary["kcore_rounds"]
    removing = [index for index, (removed, _) in enumerate(rounds) if removed > 0]
    converged = config.k_core <= 1 or any(removed == 0 for removed, _ in rounds)
    used_rounds = (removing[-1] + 1) if removing else 0
    kcore_removed = sum(removed for removed, _ in rounds)
    return {
        "dataset": config.dataset,
        "num_users": num_users,
        "num_items": num_items,
        "interactions": interactions,
        "total_interactions": total,
        "sparsity": 1.0 - total / (num_users * num_items) if num_users and num_items else 1.0,
        "raw_rows": counts.get("raw_rows", 0),
        "raw_interactions": counts.get("raw_interactions", 0),
        "dropped": {
            "bad_rows": sum(summary["bad_rows"].values()),
            "bad_rows_by_reason": dict(sorted(summary["bad_rows"].items())),
            "below_min_rating": counts.get("below_min_rating", 0),
            "duplicates": summary["duplicates"],
            "kcore": kcore_removed,
            # Split "users": users (and their interactions) shorter than data.min_sequence_length.
            "short_sequences": short_users,
            "short_sequence_interactions": short_interactions,
        },
        "kcore": {
            "k": config.k_core,
            "rounds": used_rounds,
            "max_rounds": config.max_kcore_rounds,
            "converged": converged,
            "interactions_removed_per_round": [removed for removed, _ in rounds[:used_rounds]],
            "users_removed_per_round": [users for _, users in rounds[:used_rounds]],
            "users_before": summary["users_before_kcore"],
            "items_before": summary["items_before_kcore"],
            "users_removed": summary["users_before_kcore"] - num_users,
            "items_removed": summary["items_before_kcore"] - num_items,
        },
        "split": config.split,
        # Users with interactions in each split (under "users": the sizes of the user groups).
        "users_per_split": {"train": int((user_train > 0).sum()), "valid": int((user_valid > 0).sum()),
                            "test": int((user_test > 0).sum())},
        # Split "users": the held-out users' input interactions (in no split's records), the input
        # share, the shortest kept sequence and the seed of the groups; None under other splits.
        "input_interactions": input_interactions,
        "holdout_input_fraction": config.holdout_input_fraction if users_split else None,
        "min_sequence_length": config.min_sequence_length if users_split else None,
        "split_seed": config.split_seed if users_split else None,
        "max_history": config.max_history,
        "items_without_text": summary["items_without_text"],
        "head_fraction": config.head_fraction,
        "num_head_items": int(item_is_head.sum()),
        "head_item_min_count": head_min,
        "active_user_fraction": config.active_user_fraction,
        "num_active_users": int(user_is_active.sum()),
        "active_user_min_count": active_min,
        "user_activity_from": "known_items" if users_split else "train_items",
        "item_train_counts": item_train.tolist(),
        "item_is_head": item_is_head.tolist(),
        "user_train_counts": user_train.tolist(),
        "user_is_active": user_is_active.tolist(),
        "config_hash": digest,
        "seconds": round(seconds, 2),
    }


def _check_outcome(summary: dict, stats: dict, config: DataConfig, adapter: SourceAdapter) -> None:
    first_input = adapter.interaction_tables()[0].path
    bad = stats["dropped"]["bad_rows"]
    if config.max_bad_rows is not None and bad > config.max_bad_rows:
        path, line, detail, _ = summary["bad_row_samples"][0]
        raise DataError(path, f"{bad} malformed rows exceed data.max_bad_rows={config.max_bad_rows}; "
                              f"the first, at line {line}: {detail}")
    if stats["interactions"]["train"] == 0:
        raise DataError(first_input, f"no interactions left after filtering (raw {stats['raw_interactions']}, "
                                     f"min_rating={config.min_rating}, k_core={config.k_core})")
    groups = stats["users_per_split"]
    if config.split == "users" and min(groups.values()) == 0:
        raise DataError(first_input, f"data.split 'users' needs a user in each of train, valid and test; "
                                     f"{stats['num_users']} users (after k_core={config.k_core} and "
                                     f"min_sequence_length={config.min_sequence_length}) give {groups} with "
                                     f"data.split_ratios={config.split_ratios}")


def publish_build(partial: Path, target: Path, force: bool, stats: dict, manifest_of: Callable[[], dict]) -> Path:
    """Publishes a partial build whose pipeline has finished: the driver's scratch files go,
    stats.json is written, then the manifest (it lists the files, so it comes last), then the rename."""
    (partial / SUMMARY_FILE).unlink()
    (partial / OWNER_FILE).unlink()
    (partial / spec.STATS_FILE).write_text(json.dumps(stats), encoding="utf-8")
    (partial / spec.MANIFEST_FILE).write_text(json.dumps(manifest_of(), indent=1), encoding="utf-8")
    return publish(partial, target, force)


def publish(partial: Path, target: Path, force: bool) -> Path:
    if target.exists():
        if (target / spec.MANIFEST_FILE).is_file() and not force:
            log.info("%s was completed by another run meanwhile; keeping it", target)
            shutil.rmtree(partial, ignore_errors=True)
            return target
    return publish_directory(partial, target)


def run_ingestion(data_config: DataConfig, output_dir: Path, seed: int, pipeline_args: Sequence[str] = (),
                  force: bool = False) -> Path:
    """Builds (or reuses) the prepared dataset for `data_config`; returns its directory.

    The output does not depend on `seed` (splits are chronological, ids sorted, and split "users"
    is seeded by `data.split_seed`, which is part of the data config and so of the directory
    name); it is recorded in the manifest. Bad input raises `DataError` with its file (and line).
    """
    started = time.perf_counter()
    target = prepared_dataset_dir(data_config, output_dir)
    digest = config_hash(data_config)
    if (target / spec.MANIFEST_FILE).is_file() and not force:
        log.info("reusing the prepared dataset %s", target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target)

    adapter = adapter_for(data_config)
    log.info("checking %s input files", data_config.dataset)
    adapter.check(data_config.min_rating)
    sources = [{"path": table.path, "size": file_size(table.path)}
               for table in adapter.interaction_tables() + adapter.item_tables()]
    for source in sources:
        log.info("input %s (%s)", source["path"], describe_bytes(source["size"]))

    partial = new_partial(target)
    try:
        run_pipeline(pipeline_args, "ingestion", partial,
                     lambda pipeline: build_pipeline(pipeline, adapter, data_config, str(partial)))
        summary = json.loads((partial / SUMMARY_FILE).read_text(encoding="utf-8"))
        stats = _build_stats(summary, data_config, digest, time.perf_counter() - started)
        _log_summary(stats, summary)
        _check_outcome(summary, stats, data_config, adapter)
        published = publish_build(partial, target, force, stats,
                                  lambda: _manifest(partial, summary, stats, data_config, digest, seed, sources))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log.info("prepared dataset ready at %s (%.1fs)", published, time.perf_counter() - started)
    return published


def _manifest(root: Path, summary: dict, stats: dict, config: DataConfig, digest: str, seed: int,
              sources: List[dict]) -> dict:
    files = files_with_sizes(root, summary["files"])
    shards = {name: sorted(path for path in files if path.startswith(f"{directory}/") and path.endswith(".tfrecord"))
              for name, directory in [(split, spec.split_dir(split)) for split in spec.SPLITS]
              + [("items", spec.ITEMS_DIR), ("users", spec.USERS_DIR)]}
    return {
        "format_version": spec.FORMAT_VERSION,
        "dataset": config.dataset,
        "config_hash": digest,
        "data_config": to_dict(config),
        "seed": seed,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "beam_version": beam.__version__,
        "tensorflow_version": tf.__version__,
        "sources": sources,
        "counts": {"num_users": stats["num_users"], "num_items": stats["num_items"],
                   "interactions": stats["interactions"]},
        "max_history": config.max_history,
        "shards": shards,
        "files": files,
    }


def _log_summary(stats: dict, summary: dict) -> None:
    dropped = stats["dropped"]
    log.info("read %d rows -> %d interactions; dropped: %d malformed rows, %d below min_rating, %d duplicates",
             stats["raw_rows"], stats["raw_interactions"], dropped["bad_rows"], dropped["below_min_rating"],
             dropped["duplicates"])
    for path, line, detail, reason in summary["bad_row_samples"]:
        log.warning("skipped %s:%s: %s (%s)", path, line, detail, reason)
    kcore = stats["kcore"]
    if kcore["k"] > 1:
        log.info("%d-core: %d rounds removed %s interactions; %d of %d users and %d of %d items kept%s",
                 kcore["k"], kcore["rounds"], kcore["interactions_removed_per_round"], stats["num_users"],
                 kcore["users_before"], stats["num_items"], kcore["items_before"],
                 "" if kcore["converged"] else f" (NOT converged after {kcore['max_rounds']} rounds)")
        if not kcore["converged"]:
            log.warning("k-core did not converge within data.max_kcore_rounds=%d", kcore["max_rounds"])
    if stats["split"] == "users":
        log.info("users split: %s users per group, %d users shorter than %d dropped; held-out inputs %s",
                 stats["users_per_split"], dropped["short_sequences"], stats["min_sequence_length"],
                 stats["input_interactions"])
    log.info("splits (%s): %s; head items: %d with >= %d training interactions; active users: %d with >= %d",
             stats["split"], stats["interactions"], stats["num_head_items"], stats["head_item_min_count"],
             stats["num_active_users"], stats["active_user_min_count"])
