"""Beam CTR samples: a prepared dataset + its semantic features -> labelled impressions with
behaviour sequences, user/item attributes and training-split activity buckets (`ctr_spec`).

`run_ctr_samples` builds `<output_dir>/ctr/<prepared dataset root name>-<hash>` (see
`tfrs_llmrec.data.ctr.ctr_samples_dir`) in a `.partial-` directory renamed into place after the
shards, `stats.json` and (last) `manifest.json` are written, or reuses it when complete.

Labels. The source has ratings when any interaction's label differs from 1.0 (ingestion keeps
implicit sources' labels at 1.0; MovieLens keeps the raw rating). Then every rating is an
impression, a click when rating >= ctr.positive_rating. Otherwise every interaction is a click
and each gets ctr.negatives_per_positive negatives drawn from the items' training-split
popularity ** ctr.negative_power, never one of the user's own items (any split), from a NumPy
generator seeded with (seed, user index); a negative shares its positive's timestamp and split.

The pipeline, all Beam transforms:
  read the interaction shards of every split -> group by user, sort by (timestamp, item) and
  split each timeline chronologically (`ctr_split_sizes`) -> item popularity of the training
  split (global combine, side input) -> per-user impressions (ratings or positives + negatives)
  -> training impressions per item (global combine, side input) -> per-user Examples with
  histories, attributes and activity buckets -> deterministic shards + a summary for stats.json.
The user-attribute file and the item table are small and parsed by the driver.
"""

from __future__ import annotations

import bisect
import collections
import datetime
import json
import logging
import math
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.pvalue import AsList, AsSingleton, TaggedOutput

from beam_jobs.ingest import (BAD_ROW_SAMPLES, SUMMARY_FILE, WriteJson, files_with_sizes, new_partial, publish_build,
                              remove_stale_partials, run_pipeline, shard_of, top_fraction_flags, write_shards)
from tfrs_llmrec.assets import AssetNotFound, movielens_100k_dir
from tfrs_llmrec.config.loader import to_dict
from tfrs_llmrec.config.schema import ExperimentConfig
from tfrs_llmrec.data import ctr_spec, records, spec
from tfrs_llmrec.data.adapters import RowProblem, Table
from tfrs_llmrec.data.ctr import ctr_config_hash, ctr_samples_dir, features_config_hash
from tfrs_llmrec.data.dataset import PreparedDataset
from tfrs_llmrec.data.errors import DataError
from tfrs_llmrec.data.features import SemanticFeatures

log = logging.getLogger("beam_jobs.ctr")

PathLike = Union[str, Path]
# MovieLens' own age groups: under 18, 18-24, 25-34, 35-44, 45-49, 50-55, 56 and over -> 1..7.
AGE_BUCKET_STARTS = (18, 25, 35, 45, 50, 56)
AGE_BUCKET_NAMES = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
YEAR_BUCKET_WIDTH = 5
_TRAILING_YEAR = re.compile(r"\((\d{4})\)\s*$")
USER_FILE_COLUMNS = {"user": "user_id", "age": "age", "gender": "gender", "occupation": "occupation"}


# ---------------------------------------------------------------- pure helpers (tested directly)


def ctr_split_sizes(count: int, ratios: Sequence[float]) -> Tuple[int, int, int]:
    """(train, valid, test) sizes of a timeline of `count` interactions, cut chronologically.

    Valid and test get their fraction of `count` rounded half up (so a 5-interaction timeline
    gives 3/1/1 with the default 0.8/0.1/0.1); train gets the rest and keeps at least one,
    taken from valid first, then test.
    """
    valid = math.floor(count * ratios[1] + 0.5 + 1e-9)
    test = math.floor(count * ratios[2] + 0.5 + 1e-9)
    excess = max(0, valid + test - (count - 1))
    from_valid = min(valid, excess)
    valid, test = valid - from_valid, test - (excess - from_valid)
    return count - valid - test, valid, test


def age_bucket(age: int) -> int:
    """1..7 for MovieLens' age groups (0 is left for unknown)."""
    return 1 + bisect.bisect_right(AGE_BUCKET_STARTS, age)


def title_year(title: str) -> Optional[int]:
    """The release year of a "Title (YYYY)" title."""
    match = _TRAILING_YEAR.search(title)
    return int(match.group(1)) if match else None


def sample_negatives(rng: np.random.Generator, weights: np.ndarray, exclude: np.ndarray, count: int) -> np.ndarray:
    """`count` independent draws of item indices with probability proportional to `weights`,
    never an item of `exclude`; none when no other item has weight."""
    allowed = weights.copy()
    allowed[exclude] = 0.0
    nonzero = np.flatnonzero(allowed)
    if count == 0 or nonzero.size == 0:
        return np.zeros(0, np.int64)
    cumulative = np.cumsum(allowed)
    drawn = np.searchsorted(cumulative, rng.random(count) * cumulative[-1], side="right")
    # A draw rounded up to the total would land past the last allowed item.
    return np.minimum(drawn, nonzero[-1]).astype(np.int64)


@dataclass(frozen=True)
class UserAttributes:
    """Per user index: [age bucket, gender, occupation] (0 = unknown), and the vocabularies
    (index i + 1 is vocabulary[i]); bad rows by reason with the first few (path, line, detail, reason)."""

    values: np.ndarray
    gender: List[str]
    occupation: List[str]
    bad_rows: Dict[str, int]
    bad_row_samples: List[Tuple[str, int, str, str]]

    @property
    def sizes(self) -> Dict[str, int]:
        present = bool(self.gender)
        return {"age": len(AGE_BUCKET_NAMES) + 1 if present else 1, "gender": len(self.gender) + 1,
                "occupation": len(self.occupation) + 1}


def no_user_attributes(num_users: int) -> UserAttributes:
    return UserAttributes(np.zeros((num_users, len(ctr_spec.USER_ATTRIBUTE_NAMES)), np.int64), [], [], {}, [])


def read_user_attributes(path: str, user_ids: Sequence[str], bad_rows: str) -> UserAttributes:
    """Parses a RecBole `.user` file (tab-separated, header user_id, age, gender, occupation, ...).

    A malformed row raises DataError(path:line) with bad_rows "error"; with "skip" it is counted.
    Users missing from the file get zeros; rows of users not in `user_ids` are ignored.
    """
    table = Table(path, USER_FILE_COLUMNS, separator="\t")
    table.check()
    parsed: Dict[str, Tuple[int, str, str]] = {}
    reasons: Dict[str, int] = collections.Counter()
    samples: List[Tuple[str, int, str, str]] = []
    for number, row in table.rows():
        problem = row if isinstance(row, RowProblem) else _user_row_problem(row, parsed)
        if problem is not None:
            if bad_rows == "error":
                raise DataError(path, problem.detail, line=number)
            reasons[problem.reason] += 1
            if len(samples) < BAD_ROW_SAMPLES:
                samples.append((path, number, problem.detail, problem.reason))
            continue
        parsed[row["user"].strip()] = (int(row["age"].strip()), row["gender"].strip(), row["occupation"].strip())
    genders = sorted({gender for _, gender, _ in parsed.values()})
    occupations = sorted({occupation for _, _, occupation in parsed.values()})
    gender_index = {value: index + 1 for index, value in enumerate(genders)}
    occupation_index = {value: index + 1 for index, value in enumerate(occupations)}
    values = np.zeros((len(user_ids), len(ctr_spec.USER_ATTRIBUTE_NAMES)), np.int64)
    for user_index, user_id in enumerate(user_ids):
        if user_id in parsed:
            age, gender, occupation = parsed[user_id]
            values[user_index] = (age_bucket(age), gender_index[gender], occupation_index[occupation])
    return UserAttributes(values, genders, occupations, dict(reasons), samples)


def _user_row_problem(row: Dict[str, str], parsed: Dict[str, tuple]) -> Optional[RowProblem]:
    user, age = row["user"].strip(), row["age"].strip()
    if not user:
        return RowProblem("empty_id", "empty user id")
    if not (age.isascii() and age.isdigit()):
        return RowProblem("bad_age", f"age {age!r} is not a whole number")
    for field in ("gender", "occupation"):
        if not row[field].strip():
            return RowProblem("missing_value", f"empty {field}")
    if user in parsed:
        return RowProblem("duplicate_user", f"user {user!r} appears twice")
    return None


@dataclass(frozen=True)
class ItemAttributes:
    genres: np.ndarray  # int64 [num_items, max_genres], genre vocabulary index + 1, padded with 0
    years: np.ndarray  # int64 [num_items], year bucket, 0 = unknown
    genre_vocabulary: List[str]
    first_year: Optional[int]  # bucket 1 starts here

    @property
    def sizes(self) -> Dict[str, int]:
        return {"genres": len(self.genre_vocabulary) + 1, "year": int(self.years.max(initial=0)) + 1}


def item_attributes(titles: Sequence[str], genres: Sequence[Sequence[str]]) -> ItemAttributes:
    """Genre indices (vocabulary sorted, from 1) and 5-year release buckets from "Title (YYYY)"."""
    vocabulary = sorted({genre for item_genres in genres for genre in item_genres})
    index = {genre: position + 1 for position, genre in enumerate(vocabulary)}
    per_item = [list(dict.fromkeys(index[genre] for genre in item_genres)) for item_genres in genres]
    # At least one column, so the feature keeps a fixed non-empty shape.
    width = max([1] + [len(row) for row in per_item])
    matrix = np.zeros((len(per_item), width), np.int64)
    for row, values in enumerate(per_item):
        matrix[row, :len(values)] = values
    found = [title_year(title) for title in titles]
    known = [year for year in found if year is not None]
    first_year = (min(known) // YEAR_BUCKET_WIDTH) * YEAR_BUCKET_WIDTH if known else None
    years = np.array([0 if year is None else (year - first_year) // YEAR_BUCKET_WIDTH + 1 for year in found], np.int64)
    return ItemAttributes(matrix, years, vocabulary, first_year)


# ---------------------------------------------------------------- DoFns and CombineFns


class _ReadInteractions(beam.DoFn):
    """One interaction shard of the prepared dataset -> (user, (timestamp, item, label))."""

    HAS_RATINGS = "has_ratings"
    FEATURES = {name: feature for name, feature in spec.interaction_features(1).items()
                if name in (spec.USER_INDEX, spec.ITEM_INDEX, spec.TIMESTAMP, spec.LABEL)}

    def process(self, path: str):
        started = time.perf_counter()
        rated = False
        count = 0
        try:
            for batch in tf.data.TFRecordDataset(path).batch(8192).map(
                    lambda serialized: tf.io.parse_example(serialized, self.FEATURES)):
                users, items = batch[spec.USER_INDEX].numpy().tolist(), batch[spec.ITEM_INDEX].numpy().tolist()
                timestamps, labels = batch[spec.TIMESTAMP].numpy().tolist(), batch[spec.LABEL].numpy()
                rated = rated or bool(np.any(labels != 1.0))
                count += len(users)
                yield from zip(users, zip(timestamps, items, labels.tolist()))
        except tf.errors.DataLossError as error:
            raise DataError(path, f"corrupt TFRecord shard ({error.message.splitlines()[0]})") from None
        log.info("read %s: %d interactions (%.1fs)", path, count, time.perf_counter() - started)
        yield TaggedOutput(self.HAS_RATINGS, rated)


def _split_timeline(element, ratios: Sequence[float], train_items_tag: str):
    """A user's interactions -> (user, [(timestamp, item, label, split index)]) in time order,
    ties by item index; the training items go to `train_items_tag` (popularity)."""
    user, events = element
    events = sorted(events)
    num_train, num_valid, _ = ctr_split_sizes(len(events), ratios)
    splits = [0] * num_train + [1] * num_valid + [2] * (len(events) - num_train - num_valid)
    yield TaggedOutput(train_items_tag, [item for _, item, _ in events[:num_train]])
    yield user, [(timestamp, item, label, split) for (timestamp, item, label), split in zip(events, splits)]


class _ItemCounts(beam.CombineFn):
    """int64 [num_items] counts of lists of item indices."""

    def __init__(self, num_items: int):
        self._num_items = num_items

    def create_accumulator(self):
        return np.zeros(self._num_items, np.int64)

    def add_input(self, counts, items):
        return counts + np.bincount(np.asarray(items, np.int64), minlength=self._num_items)

    def merge_accumulators(self, accumulators):
        return sum(accumulators, self.create_accumulator())

    def extract_output(self, counts):
        return counts


class _BuildImpressions(beam.DoFn):
    """A user's split timeline -> (user, [(timestamp, item, label, rating, split, sampled)]):
    ratings as impressions, or each interaction as a click followed by its sampled negatives."""

    TRAIN_ITEMS = "train_impression_items"

    def __init__(self, positive_rating: float, negatives_per_positive: int, seed: int):
        self._positive_rating = positive_rating
        self._negatives = negatives_per_positive
        self._seed = seed

    def process(self, element, has_ratings: bool, negative_weights: np.ndarray):
        user, timeline = element
        if has_ratings:
            impressions = [(timestamp, item, 1.0 if rating >= self._positive_rating else 0.0, rating, split, False)
                           for timestamp, item, rating, split in timeline]
        else:
            rng = np.random.default_rng([self._seed, user])
            own = np.array([item for _, item, _, _ in timeline], np.int64)
            negatives = sample_negatives(rng, negative_weights, own, len(timeline) * self._negatives).tolist()
            impressions = []
            for position, (timestamp, item, _, split) in enumerate(timeline):
                impressions.append((timestamp, item, 1.0, 1.0, split, False))
                impressions.extend((timestamp, negative, 0.0, 0.0, split, True) for negative in
                                   negatives[position * self._negatives:(position + 1) * self._negatives])
        yield TaggedOutput(self.TRAIN_ITEMS, [item for _, item, _, _, split, _ in impressions if split == 0])
        yield user, impressions


class _BuildExamples(beam.DoFn):
    """A user's impressions -> (shard, ((user, position), Example)) per split, and the user's counts."""

    USER_COUNTS = "user_counts"

    def __init__(self, user_attributes: np.ndarray, items: ItemAttributes, clusters: np.ndarray, max_history: int,
                 activity_buckets: int, num_shards: int):
        self._user_attributes = user_attributes
        self._genres = items.genres
        self._years = items.years
        self._clusters = clusters
        self._max_history = max_history
        self._buckets = activity_buckets
        self._num_shards = num_shards

    def process(self, element, item_activity: np.ndarray):
        user, impressions = element
        clusters = self._clusters
        # Counts of the training split only, so valid/test impressions never leak into features.
        train_items = [item for _, item, _, _, split, _ in impressions if split == 0]
        cluster_counts = collections.Counter(clusters[train_items].tolist())
        user_feature = records.int64s([int(ctr_spec.activity_bucket(len(train_items), self._buckets))])
        attributes_feature = records.int64s(self._user_attributes[user].tolist())
        clicks = [(timestamp, item) for timestamp, item, label, _, _, _ in impressions if label > 0]
        click_times = [timestamp for timestamp, _ in clicks]
        click_items = [item for _, item in clicks]
        counts = np.zeros((3, len(spec.SPLITS)), np.int64)  # impressions, positives, negatives sampled
        for position, (timestamp, item, label, rating, split, sampled) in enumerate(impressions):
            earlier = bisect.bisect_left(click_times, timestamp)
            recent_first = click_items[max(0, earlier - self._max_history):earlier][::-1]
            cross = cluster_counts.get(int(clusters[item]), 0)
            example = records.serialize({
                spec.USER_INDEX: records.int64s([user]),
                spec.ITEM_INDEX: records.int64s([item]),
                spec.TIMESTAMP: records.int64s([timestamp]),
                spec.LABEL: records.floats([label]),
                ctr_spec.RATING: records.floats([rating]),
                spec.HISTORY: records.int64s(records.padded_history(recent_first, self._max_history)),
                spec.HISTORY_LENGTH: records.int64s([len(recent_first)]),
                ctr_spec.USER_ATTRIBUTES: attributes_feature,
                ctr_spec.ITEM_GENRES: records.int64s(self._genres[item].tolist()),
                ctr_spec.ITEM_YEAR: records.int64s([int(self._years[item])]),
                ctr_spec.ITEM_CLUSTER: records.int64s([int(clusters[item])]),
                ctr_spec.USER_ACTIVITY: user_feature,
                ctr_spec.ITEM_ACTIVITY: records.int64s([int(item_activity[item])]),
                ctr_spec.CROSS_ACTIVITY: records.int64s([int(ctr_spec.activity_bucket(cross, self._buckets))]),
            })
            counts[0, split] += 1
            counts[1, split] += label > 0
            counts[2, split] += sampled
            yield TaggedOutput(spec.SPLITS[split], (shard_of(user, position, self._num_shards),
                                                    ((user, position), example)))
        yield TaggedOutput(self.USER_COUNTS, (user, counts.tolist()))


def _summarize(_, has_ratings, popularity, item_train_impressions, user_counts, shard_files, num_users):
    per_user = np.zeros((num_users, 3, len(spec.SPLITS)), np.int64)
    for user, counts in user_counts:
        per_user[user] = counts
    return {
        "has_ratings": bool(has_ratings),
        "impressions": per_user[:, 0].sum(axis=0).tolist(),
        "positives": per_user[:, 1].sum(axis=0).tolist(),
        "negatives_sampled": per_user[:, 2].sum(axis=0).tolist(),
        "users_with_impressions": int((per_user[:, 0].sum(axis=1) > 0).sum()),
        "user_train_impressions": per_user[:, 0, 0].tolist(),
        "item_train_impressions": np.asarray(item_train_impressions).tolist(),
        "item_train_interactions": np.asarray(popularity).tolist(),
        "files": {path: count for path, count in shard_files},
    }


def build_pipeline(pipeline, dataset: PreparedDataset, config: ExperimentConfig, users: UserAttributes,
                   items: ItemAttributes, clusters: np.ndarray, root: str) -> None:
    """Adds the CTR transforms to `pipeline`; outputs land under `root`."""
    ctr = config.ctr
    num_items, num_shards = dataset.num_items, ctr.num_shards
    files = [path for split in spec.SPLITS for path in dataset.shard_files(split)]
    read = (pipeline | "InteractionFiles" >> beam.Create(files)
            | "ReadInteractions" >> beam.ParDo(_ReadInteractions()).with_outputs(_ReadInteractions.HAS_RATINGS,
                                                                                 main="interactions"))
    has_ratings = read[_ReadInteractions.HAS_RATINGS] | "HasRatings" >> beam.CombineGlobally(any)

    timelines = (read.interactions | "GroupByUser" >> beam.GroupByKey()
                 | "SplitTimelines" >> beam.FlatMap(_split_timeline, list(ctr.split_ratios), "train_items")
                 .with_outputs("train_items", main="timelines"))
    popularity = timelines.train_items | "TrainPopularity" >> beam.CombineGlobally(_ItemCounts(num_items))
    negative_weights = popularity | "NegativeWeights" >> beam.Map(
        lambda counts, power: np.power(counts.astype(np.float64), power), ctr.negative_power)

    impressions = (timelines.timelines | "BuildImpressions" >> beam.ParDo(
        _BuildImpressions(ctr.positive_rating, ctr.negatives_per_positive, config.seed),
        AsSingleton(has_ratings), AsSingleton(negative_weights))
        .with_outputs(_BuildImpressions.TRAIN_ITEMS, main="impressions"))
    item_train_impressions = (impressions[_BuildImpressions.TRAIN_ITEMS]
                              | "TrainImpressionsPerItem" >> beam.CombineGlobally(_ItemCounts(num_items)))
    item_activity = item_train_impressions | "ItemActivity" >> beam.Map(ctr_spec.activity_bucket, ctr.activity_buckets)

    examples = (impressions.impressions | "BuildExamples" >> beam.ParDo(
        _BuildExamples(users.values, items, clusters, ctr.max_history, ctr.activity_buckets, num_shards),
        AsSingleton(item_activity)).with_outputs(*spec.SPLITS, _BuildExamples.USER_COUNTS))
    written = [write_shards(pipeline, split.capitalize(), examples[split], root, spec.split_dir(split),
                            spec.INTERACTIONS_PREFIX, num_shards) for split in spec.SPLITS]
    shard_files = tuple(written) | "AllShards" >> beam.Flatten()

    (pipeline | "SummarySeed" >> beam.Create([None])
     | "Summarize" >> beam.Map(_summarize, has_ratings=AsSingleton(has_ratings), popularity=AsSingleton(popularity),
                               item_train_impressions=AsSingleton(item_train_impressions),
                               user_counts=AsList(examples[_BuildExamples.USER_COUNTS]),
                               shard_files=AsList(shard_files), num_users=dataset.num_users)
     | "WriteSummary" >> beam.ParDo(WriteJson(f"{root}/{SUMMARY_FILE}")))


# ---------------------------------------------------------------- the driver


def default_user_attributes_path(dataset: PreparedDataset) -> Optional[str]:
    """MovieLens-100K's `ml-100k.user` from the embedded RecBole copy; None for other sources."""
    if dataset.manifest.get("dataset") != "ml-100k":
        return None
    try:
        return str(movielens_100k_dir() / "ml-100k.user")
    except AssetNotFound as error:
        raise DataError("<embedded ml-100k>", str(error)) from None


def _load_user_attributes(config: ExperimentConfig, dataset: PreparedDataset,
                          path: Optional[str]) -> Tuple[UserAttributes, Optional[str]]:
    path = path if path is not None else default_user_attributes_path(dataset)
    if path is None:
        return no_user_attributes(dataset.num_users), None
    users = read_user_attributes(path, dataset.user_ids(), config.data.bad_rows)
    bad = sum(users.bad_rows.values())
    for source, line, detail, reason in users.bad_row_samples:
        log.warning("skipped %s:%s: %s (%s)", source, line, detail, reason)
    if config.data.max_bad_rows is not None and bad > config.data.max_bad_rows:
        source, line, detail, _ = users.bad_row_samples[0]
        raise DataError(source, f"{bad} malformed rows exceed data.max_bad_rows={config.data.max_bad_rows}; "
                                f"the first, at line {line}: {detail}")
    known = int((users.values[:, 0] > 0).sum())
    log.info("user attributes from %s: %d of %d users found, %d malformed rows skipped", path, known,
             dataset.num_users, bad)
    return users, path


def _item_clusters(features_dir: Path, num_items: int) -> Tuple[np.ndarray, dict]:
    features = SemanticFeatures.open(features_dir)
    codes = features.item_semantic_ids
    if codes.shape[0] != num_items:
        raise DataError(features_dir, f"semantic IDs for {codes.shape[0]} items, the dataset has {num_items}; "
                                      "these features belong to another dataset")
    return codes[:, 0].astype(np.int64), features.manifest


def _by_split(values: Sequence[int]) -> Dict[str, int]:
    return {split: int(value) for split, value in zip(spec.SPLITS, values)}


def _build_stats(summary: dict, config: ExperimentConfig, users: UserAttributes, digest: str, num_items: int,
                 seconds: float) -> dict:
    item_train = np.asarray(summary["item_train_impressions"], np.int64)
    user_train = np.asarray(summary["user_train_impressions"], np.int64)
    item_is_head, head_min = top_fraction_flags(item_train, config.data.head_fraction)
    user_is_active, active_min = top_fraction_flags(user_train, config.data.active_user_fraction)
    impressions, positives = summary["impressions"], summary["positives"]
    return {
        "has_ratings": summary["has_ratings"],
        "positive_rating": config.ctr.positive_rating if summary["has_ratings"] else None,
        "negatives_per_positive": None if summary["has_ratings"] else config.ctr.negatives_per_positive,
        "num_users": len(user_train),
        "num_items": num_items,
        "users_with_impressions": summary["users_with_impressions"],
        "items_with_train_impressions": int((item_train > 0).sum()),
        "impressions": _by_split(impressions),
        "positives": _by_split(positives),
        "positive_rate": {split: (positive / count if count else 0.0)
                          for split, positive, count in zip(spec.SPLITS, positives, impressions)},
        "negatives_sampled": _by_split(summary["negatives_sampled"]),
        "bad_rows": sum(users.bad_rows.values()),
        "bad_rows_by_reason": dict(sorted(users.bad_rows.items())),
        "users_with_attributes": int((users.values[:, 0] > 0).sum()),
        "head_fraction": config.data.head_fraction,
        "num_head_items": int(item_is_head.sum()),
        "head_item_min_count": head_min,
        "active_user_fraction": config.data.active_user_fraction,
        "num_active_users": int(user_is_active.sum()),
        "active_user_min_count": active_min,
        ctr_spec.ITEM_TRAIN_IMPRESSIONS: item_train.tolist(),
        ctr_spec.USER_TRAIN_IMPRESSIONS: user_train.tolist(),
        ctr_spec.ITEM_IS_HEAD: item_is_head.tolist(),
        ctr_spec.USER_IS_ACTIVE: user_is_active.tolist(),
        "item_train_interactions": summary["item_train_interactions"],
        "config_hash": digest,
        "seconds": round(seconds, 2),
    }


def _manifest(root: Path, summary: dict, stats: dict, config: ExperimentConfig, digest: str, dataset: PreparedDataset,
              features_dir: Path, features_manifest: dict, users: UserAttributes, user_path: Optional[str],
              items: ItemAttributes) -> dict:
    files = files_with_sizes(root, summary["files"])
    return {
        "config_hash": digest,
        "ctr_config": to_dict(config.ctr),
        "seed": config.seed,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "beam_version": beam.__version__,
        "tensorflow_version": tf.__version__,
        "dataset": {"root": str(dataset.root), "name": dataset.manifest.get("dataset"),
                    "config_hash": dataset.manifest.get("config_hash")},
        "features": {"root": str(features_dir), "config_hash": features_manifest.get("features_config_hash"),
                     "item_sid_levels": features_manifest.get("item_sid_levels")},
        "has_ratings": stats["has_ratings"],
        "num_users": stats["num_users"],
        "num_items": stats["num_items"],
        "counts": stats["impressions"],
        "max_history": config.ctr.max_history,
        "max_genres": int(items.genres.shape[1]),
        "activity_buckets": config.ctr.activity_buckets,
        "attributes": {**users.sizes, **items.sizes},
        "vocabularies": {"age": list(AGE_BUCKET_NAMES) if users.gender else [], "gender": users.gender,
                         "occupation": users.occupation, "genres": items.genre_vocabulary,
                         "year": {"first_year": items.first_year, "bucket_years": YEAR_BUCKET_WIDTH}},
        "user_attributes_source": user_path,
        "shards": {split: sorted(path for path in files if path.startswith(f"{spec.split_dir(split)}/"))
                   for split in spec.SPLITS},
        "files": files,
    }


def run_ctr_samples(config: ExperimentConfig, dataset_dir: PathLike, features_dir: PathLike, output_dir: PathLike,
                    pipeline_args: Sequence[str] = (), force: bool = False,
                    user_attributes_path: Optional[PathLike] = None) -> Path:
    """Builds (or reuses) the CTR samples of the prepared dataset in `dataset_dir` with the item
    clusters of `features_dir`; returns their directory (`ctr_samples_dir`).

    `user_attributes_path` replaces the default user-attribute file (MovieLens-100K's embedded
    `ml-100k.user` for ml-100k, none otherwise). Bad input raises DataError with its file (and line).
    """
    started = time.perf_counter()
    dataset_dir, features_dir = Path(dataset_dir), Path(features_dir)
    target = ctr_samples_dir(config, dataset_dir, features_dir, output_dir, user_attributes_path)
    if (target / spec.MANIFEST_FILE).is_file() and not force:
        log.info("reusing the CTR samples %s", target)
        return target
    digest = ctr_config_hash(config, features_config_hash(features_dir), user_attributes_path)
    dataset = PreparedDataset.open(dataset_dir)
    if dataset.split_method == "users":
        raise DataError(dataset_dir, "CTR samples re-split each user's timeline chronologically, but this dataset "
                                     "has data.split 'users' (held-out users' inputs are in no split's records); "
                                     "prepare one with data.split 'leave_one_out' or 'ratio' for the CTR rankers")
    clusters, features_manifest = _item_clusters(features_dir, dataset.num_items)
    table = dataset.item_table()
    items = item_attributes(table.titles, table.genres)
    users, user_path = _load_user_attributes(config, dataset, None if user_attributes_path is None
                                             else str(user_attributes_path))
    log.info("%d items: %d genres (at most %d per item), %d with a release year; %d item clusters",
             dataset.num_items, len(items.genre_vocabulary), items.genres.shape[1], int((items.years > 0).sum()),
             len(np.unique(clusters)))

    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target)
    partial = new_partial(target)
    try:
        run_pipeline(pipeline_args, "CTR samples", partial,
                     lambda pipeline: build_pipeline(pipeline, dataset, config, users, items, clusters, str(partial)))
        summary = json.loads((partial / SUMMARY_FILE).read_text(encoding="utf-8"))
        stats = _build_stats(summary, config, users, digest, dataset.num_items, time.perf_counter() - started)
        _log_summary(stats)
        if stats["impressions"]["train"] == 0:
            raise DataError(dataset_dir, "no training impressions")
        published = publish_build(partial, target, force, stats, lambda: _manifest(
            partial, summary, stats, config, digest, dataset, features_dir, features_manifest, users, user_path, items))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log.info("CTR samples ready at %s (%.1fs)", published, time.perf_counter() - started)
    return published


def _log_summary(stats: dict) -> None:
    if stats["has_ratings"]:
        log.info("ratings found: every rating is an impression, a click when >= %g", stats["positive_rating"])
    else:
        log.info("no ratings (every label is 1.0): %d negatives per positive sampled: %s",
                 stats["negatives_per_positive"], stats["negatives_sampled"])
    log.info("impressions %s, positives %s, positive rate %s", stats["impressions"], stats["positives"],
             {split: round(rate, 4) for split, rate in stats["positive_rate"].items()})
    log.info("head items: %d with >= %d training impressions; active users: %d with >= %d",
             stats["num_head_items"], stats["head_item_min_count"], stats["num_active_users"],
             stats["active_user_min_count"])
