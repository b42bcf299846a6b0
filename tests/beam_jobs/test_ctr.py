"""The CTR samples Beam job, run for real (FnApiRunner) on tiny hand-made prepared datasets
(real ingestion of a csv, hand-chosen item clusters) and on MovieLens-100K."""

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import tensorflow as tf

import beam_jobs.ctr as ctr_job
from beam_jobs.ctr import (ctr_split_sizes, item_attributes, read_user_attributes, run_ctr_samples,
                           sample_negatives, title_year)
from beam_jobs.ingest import run_ingestion
from tests.data import csv_config
from tfrs_llmrec.config.loader import from_dict
from tfrs_llmrec.config.schema import CtrDataConfig, DataConfig, ExperimentConfig, FeaturesConfig
from tfrs_llmrec.data import DataError, PreparedDataset
from tfrs_llmrec.data import features_spec as fspec
from tfrs_llmrec.data import records, spec
from tfrs_llmrec.data.ctr import CtrDataset
from tfrs_llmrec.data.ctr_spec import activity_bucket

# Items a..j -> 0..9, users u1..u3 -> 0..2. With split_ratios 0.6/0.2/0.2, u1's ten ratings split
# 6/2/2, u2's five 3/1/1 and u3's two 2/0/0. c and d share u1's timestamp 3.
RATED_LOG = """user_id,item_id,timestamp,rating
u1,a,1,5
u1,b,2,2
u1,c,3,4
u1,d,3,5
u1,e,4,1
u1,f,5,4
u1,g,6,3
u1,h,7,4
u1,i,8,5
u1,j,9,2
u2,a,1,4
u2,c,2,3
u2,e,3,5
u2,b,4,4
u2,d,5,1
u3,c,1,2
u3,j,2,4
"""
ITEMS = """item_id,title,genres
a,Alpha (1995),Drama|Comedy
b,Beta (1971),Comedy
c,Gamma,Action
d,Delta (1999),
"""
# Top-level semantic ID (item_cluster) of a..j; a second level that must be ignored.
CLUSTERS = [0, 0, 1, 1, 2, 1, 0, 1, 2, 0]
USER_FILE = ("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
             "u1\t17\tM\tstudent\t11111\n"
             "u2\t30\tF\tartist\t22222\n"
             "u9\t60\tM\tretired\t33333\n")


def write_fake_features(directory: Path, item_codes, num_users: int, config_hash: str = "handmade") -> Path:
    """A features directory as beam_jobs/features.py writes it, with chosen semantic IDs."""
    codes = np.asarray(item_codes, np.int64).reshape(len(item_codes), -1)
    for sub in (fspec.ITEMS_SUBDIR, fspec.USERS_SUBDIR):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    zero = records.floats([0.0])
    with tf.io.TFRecordWriter(str(directory / fspec.ITEMS_SUBDIR / "items-00000-of-00001.tfrecord")) as writer:
        for index, code in enumerate(codes):
            writer.write(records.serialize({
                spec.ITEM_INDEX: records.int64s([index]), fspec.TITLE_VECTOR: zero, fspec.METADATA_VECTOR: zero,
                fspec.MOTIVATION_VECTOR: zero, fspec.HAS_MOTIVATION: records.int64s([0]),
                fspec.SEMANTIC_ID: records.int64s(code.tolist()), fspec.TEXT_SHA256: records.strings([""])}))
    with tf.io.TFRecordWriter(str(directory / fspec.USERS_SUBDIR / "users-00000-of-00001.tfrecord")) as writer:
        for index in range(num_users):
            writer.write(records.serialize({
                spec.USER_INDEX: records.int64s([index]), fspec.HISTORY_VECTOR: zero,
                fspec.INTERESTS: records.floats([]), fspec.NUM_INTERESTS: records.int64s([0]),
                fspec.SEMANTIC_ID: records.int64s([0])}))
    (directory / spec.MANIFEST_FILE).write_text(json.dumps({
        "dimension": 1, "num_items": len(codes), "num_users": num_users, "llm": {"max_interests": 1},
        "item_sid_levels": codes.shape[1], "user_sid_levels": 1, "features_config_hash": config_hash}))
    return directory


def experiment(data: DataConfig, seed: int = 7, **ctr) -> ExperimentConfig:
    settings = {"split_ratios": [0.6, 0.2, 0.2], "max_history": 3, "activity_buckets": 4, "num_shards": 2, **ctr}
    return ExperimentConfig(name="ctr", seed=seed, data=data, ctr=from_dict(CtrDataConfig, settings))


def prepare(directory: Path, log: str, clusters=None, items: Optional[str] = ITEMS, label: Optional[str] = "rating"):
    """Ingests `log` (and `items`, csv) and writes features whose top-level semantic IDs are
    `clusters` (default: item index % 3); returns (data config, dataset dir, features dir)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "log.csv").write_text(log, encoding="utf-8")
    columns = {"label": label}
    if items is not None:
        (directory / "items.csv").write_text(items, encoding="utf-8")
        columns.update(items_path=str(directory / "items.csv"), genres="genres")
    data = csv_config(directory / "log.csv", columns=columns)
    dataset_dir = run_ingestion(data, directory / "runs", seed=0)
    dataset = PreparedDataset.open(dataset_dir)
    clusters = clusters if clusters is not None else [item % 3 for item in range(dataset.num_items)]
    features_dir = write_fake_features(directory / "features", [[cluster, 7] for cluster in clusters],
                                       dataset.num_users)
    return data, dataset_dir, features_dir


def read_examples(root: Path, split: str):
    """{(user, item): parsed example} of a split."""
    samples = CtrDataset.open(root)
    arrays = samples.arrays(split)
    return {(int(user), int(item)): {name: values[row] for name, values in arrays.items()}
            for row, (user, item) in enumerate(zip(arrays["user_index"], arrays["item_index"]))}


@pytest.fixture(scope="module")
def rated(tmp_path_factory):
    directory = tmp_path_factory.mktemp("rated")
    data, dataset_dir, features_dir = prepare(directory, RATED_LOG, CLUSTERS)
    (directory / "users.user").write_text(USER_FILE, encoding="utf-8")
    config = experiment(data)
    root = run_ctr_samples(config, dataset_dir, features_dir, directory / "runs",
                           user_attributes_path=directory / "users.user")
    return directory, config, dataset_dir, features_dir, root


# ---------------------------------------------------------------- pure helpers


def test_split_sizes_round_valid_and_test_and_keep_one_training_impression():
    assert ctr_split_sizes(10, [0.8, 0.1, 0.1]) == (8, 1, 1)
    assert ctr_split_sizes(5, [0.8, 0.1, 0.1]) == (3, 1, 1)
    assert ctr_split_sizes(4, [0.8, 0.1, 0.1]) == (4, 0, 0)
    assert ctr_split_sizes(20, [0.6, 0.2, 0.2]) == (12, 4, 4)
    assert ctr_split_sizes(2, [0.2, 0.4, 0.4]) == (1, 0, 1)  # valid gives way first
    assert ctr_split_sizes(1, [0.2, 0.4, 0.4]) == (1, 0, 0)


def test_title_years_and_genres_become_indices():
    assert title_year("Toy Story (1995)") == 1995 and title_year("Toy Story") is None
    assert title_year("1995 (film) (2001) ") == 2001
    items = item_attributes(["A (1995)", "B (1971)", "C", "D (1999)"], [["Drama", "Comedy"], ["Comedy"], [], []])
    assert items.genre_vocabulary == ["Comedy", "Drama"]
    assert items.genres.tolist() == [[2, 1], [1, 0], [0, 0], [0, 0]]
    assert items.first_year == 1970 and items.years.tolist() == [6, 1, 0, 6]
    assert items.sizes == {"genres": 3, "year": 7}


def test_user_file_is_parsed_into_buckets_and_vocabularies(tmp_path):
    path = tmp_path / "ml-100k.user"
    path.write_text(USER_FILE, encoding="utf-8")
    users = read_user_attributes(str(path), ["u1", "u2", "u3"], "error")
    # Ages 17 -> <18 (1), 30 -> 25-34 (3); genders F, M and occupations artist, retired, student from 1.
    assert users.values.tolist() == [[1, 2, 3], [3, 1, 1], [0, 0, 0]]
    assert users.gender == ["F", "M"] and users.occupation == ["artist", "retired", "student"]
    assert users.sizes == {"age": 8, "gender": 3, "occupation": 4}


def test_a_malformed_user_row_is_one_error_naming_file_and_line(tmp_path):
    path = tmp_path / "ml-100k.user"
    path.write_text(USER_FILE + "u4\tforty\tM\twriter\t44444\nu5\t20\tM\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:5: age 'forty' is not a whole number$"):
        read_user_attributes(str(path), ["u1"], "error")
    skipped = read_user_attributes(str(path), ["u1", "u4"], "skip")
    assert skipped.bad_rows == {"bad_age": 1, "field_count": 1}
    assert [sample[:2] for sample in skipped.bad_row_samples] == [(str(path), 5), (str(path), 6)]
    assert skipped.values[1].tolist() == [0, 0, 0]


def test_negatives_follow_the_weights_and_skip_excluded_items():
    weights = np.array([0.0, 1.0, 2.0, 4.0, 8.0])
    drawn = sample_negatives(np.random.default_rng(0), weights, np.array([4]), 70_000)
    assert set(drawn.tolist()) == {1, 2, 3}
    np.testing.assert_allclose(np.bincount(drawn, minlength=5) / 70_000, [0, 1 / 7, 2 / 7, 4 / 7, 0], atol=0.01)
    assert sample_negatives(np.random.default_rng(0), weights, np.array([1, 2, 3, 4]), 3).size == 0


# ---------------------------------------------------------------- the hand-made rated log


def test_labels_ratings_and_split_sizes(rated):
    _, _, _, _, root = rated
    train, valid, test = (read_examples(root, split) for split in spec.SPLITS)
    # Items by index: a0 b1 c2 d3 e4 f5 g6 h7 i8 j9; a click is a rating >= 4.
    assert sorted(train) == [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 0), (1, 2), (1, 4), (2, 2), (2, 9)]
    assert sorted(valid) == [(0, 6), (0, 7), (1, 1)]
    assert sorted(test) == [(0, 8), (0, 9), (1, 3)]
    ratings = {(0, 0): 5, (0, 1): 2, (0, 2): 4, (0, 3): 5, (0, 4): 1, (0, 5): 4, (1, 0): 4, (1, 2): 3, (1, 4): 5,
               (2, 2): 2, (2, 9): 4, (0, 6): 3, (0, 7): 4, (1, 1): 4, (0, 8): 5, (0, 9): 2, (1, 3): 1}
    for examples in (train, valid, test):
        for key, example in examples.items():
            assert example["rating"] == ratings[key]
            assert example["label"] == (1.0 if ratings[key] >= 4 else 0.0), key
    stats = CtrDataset.open(root).stats
    assert stats["has_ratings"] and stats["impressions"] == {"train": 11, "valid": 3, "test": 3}
    assert stats["positives"] == {"train": 7, "valid": 2, "test": 1}
    assert stats["negatives_sampled"] == {"train": 0, "valid": 0, "test": 0}


def test_history_holds_earlier_clicks_only_most_recent_first(rated):
    _, _, _, _, root = rated
    examples = {**read_examples(root, "train"), **read_examples(root, "valid"), **read_examples(root, "test")}
    pad = -1
    expected = {  # u1, max_history 3: b, e, g, j are not clicks; c and d share timestamp 3.
        (0, 0): [pad, pad, pad], (0, 1): [0, pad, pad], (0, 2): [0, pad, pad], (0, 3): [0, pad, pad],
        (0, 4): [3, 2, 0], (0, 5): [3, 2, 0], (0, 6): [5, 3, 2], (0, 7): [5, 3, 2], (0, 8): [7, 5, 3],
        (0, 9): [8, 7, 5],
        (1, 0): [pad, pad, pad], (1, 2): [0, pad, pad], (1, 4): [0, pad, pad], (1, 1): [4, 0, pad],
        (1, 3): [1, 4, 0], (2, 2): [pad, pad, pad], (2, 9): [pad, pad, pad]}
    for key, history in expected.items():
        assert examples[key]["history"].tolist() == history, key
        assert examples[key]["history_length"] == sum(item != pad for item in history), key


def hand_activity(impressions, clusters, buckets):
    """(user, item) -> (user, item, cross) activity buckets from the training impressions given."""
    user_counts = {user: sum(1 for u, _ in impressions if u == user) for user, _ in impressions}
    item_counts = {}
    for _, item in impressions:
        item_counts[item] = item_counts.get(item, 0) + 1

    def features(user, item):
        cross = sum(1 for u, other in impressions if u == user and clusters[other] == clusters[item])
        counts = (user_counts[user], item_counts.get(item, 0), cross)
        return tuple(int(activity_bucket(count, buckets)) for count in counts)
    return features


def test_activity_buckets_count_the_training_split_only(rated):
    _, _, _, _, root = rated
    train = read_examples(root, "train")
    activity = hand_activity(list(train), CLUSTERS, 4)
    # By hand: u1 has 6 training impressions (bucket 3 of 0,1,2-3,4+), u2 3 (2), u3 2 (2); item c
    # has 3 (2), g none (0); u1's training clusters are a0 b0 c1 d1 e2 f1: cluster 1 counts 3 (2),
    # cluster 0 counts 2 (2).
    assert activity(0, 2) == (3, 2, 2) and activity(0, 6) == (3, 0, 2) and activity(1, 3) == (2, 1, 1)
    for split in spec.SPLITS:
        for (user, item), example in read_examples(root, split).items():
            found = (example["user_activity"], example["item_activity"], example["cross_activity"])
            assert found == activity(user, item), (split, user, item)
    stats = CtrDataset.open(root).stats
    assert stats["item_train_impressions"] == [2, 1, 3, 1, 2, 1, 0, 0, 0, 1]
    assert stats["user_train_impressions"] == [6, 3, 2]


def test_attributes_of_users_and_items(rated):
    _, _, _, _, root = rated
    samples = CtrDataset.open(root)
    examples = read_examples(root, "train")
    assert examples[(0, 0)]["user_attributes"].tolist() == [1, 2, 3]  # 17, M, student
    assert examples[(1, 0)]["user_attributes"].tolist() == [3, 1, 1]  # 30, F, artist
    assert examples[(2, 2)]["user_attributes"].tolist() == [0, 0, 0]  # not in the file
    assert examples[(0, 0)]["item_genres"].tolist() == [3, 2]  # Drama, Comedy of Action, Comedy, Drama
    assert examples[(0, 2)]["item_genres"].tolist() == [1, 0] and examples[(0, 4)]["item_genres"].tolist() == [0, 0]
    assert [int(examples[(0, item)]["item_year"]) for item in (0, 1, 2, 3)] == [6, 1, 0, 6]
    assert [int(examples[(0, item)]["item_cluster"]) for item in range(6)] == CLUSTERS[:6]
    assert samples.attributes == {"age": 8, "gender": 3, "occupation": 4, "genres": 4, "year": 7}
    assert samples.max_genres == 2 and samples.max_history == 3
    assert samples.manifest["vocabularies"]["occupation"] == ["artist", "retired", "student"]


def test_changing_a_test_impression_changes_no_activity_value(rated, tmp_path):
    _, config, _, _, root = rated
    # u2's test rating of d becomes a 5-star rating of h.
    changed_log = RATED_LOG.replace("u2,d,5,1", "u2,h,5,5")
    data, dataset_dir, features_dir = prepare(tmp_path, changed_log, CLUSTERS)
    changed = run_ctr_samples(experiment(data), dataset_dir, features_dir, tmp_path / "runs")
    names = ("user_activity", "item_activity", "cross_activity")
    for split in ("train", "valid"):
        before, after = read_examples(root, split), read_examples(changed, split)
        assert {key: [example[name] for name in names] for key, example in before.items()} == {
            key: [example[name] for name in names] for key, example in after.items()}
    assert [read_examples(changed, "test")[(1, 7)][name] for name in names] == [2, 0, 1]
    assert [read_examples(root, "test")[(1, 3)][name] for name in names] == [2, 1, 1]
    assert CtrDataset.open(changed).stats["item_train_impressions"] == CtrDataset.open(root).stats[
        "item_train_impressions"]


def test_manifest_stats_and_reuse(rated, monkeypatch):
    directory, config, dataset_dir, features_dir, root = rated
    manifest = json.loads((root / spec.MANIFEST_FILE).read_text())
    assert root.parent == directory / "runs" / "ctr" and root.name.startswith(f"{dataset_dir.name}-")
    assert manifest["config_hash"] == root.name.rsplit("-", 1)[1]
    assert manifest["dataset"]["root"] == str(dataset_dir) and manifest["features"]["root"] == str(features_dir)
    assert manifest["features"]["config_hash"] == "handmade"
    assert manifest["counts"] == {"train": 11, "valid": 3, "test": 3}
    assert sum(manifest["files"][path]["records"] for path in manifest["shards"]["train"]) == 11
    for relative, entry in manifest["files"].items():
        assert (root / relative).stat().st_size == entry["size"]
    stats = json.loads((root / spec.STATS_FILE).read_text())
    assert stats["item_is_head"] == [True, False, True, False, False, False, False, False, False, False]
    assert stats["user_is_active"] == [True, False, False]
    assert stats["users_with_attributes"] == 2 and stats["bad_rows"] == 0
    assert not list(root.parent.glob("*.partial-*"))

    def no_pipeline(*args, **kwargs):
        raise AssertionError("the pipeline ran again")

    monkeypatch.setattr(ctr_job.beam, "Pipeline", no_pipeline)
    assert run_ctr_samples(config, dataset_dir, features_dir, directory / "runs",
                           user_attributes_path=directory / "users.user") == root


def test_a_failed_run_leaves_nothing_that_looks_complete(rated, tmp_path, monkeypatch):
    directory, config, dataset_dir, features_dir, _ = rated

    def fail(*args, **kwargs):
        raise RuntimeError("killed after the pipeline")

    monkeypatch.setattr(ctr_job, "_build_stats", fail)
    with pytest.raises(RuntimeError, match="killed after the pipeline"):
        run_ctr_samples(config, dataset_dir, features_dir, tmp_path)
    assert [path.name for path in (tmp_path / "ctr").iterdir() if ".partial-" not in path.name] == []


def test_a_malformed_user_row_stops_the_job_before_anything_is_written(rated, tmp_path):
    directory, config, dataset_dir, features_dir, _ = rated
    path = tmp_path / "bad.user"
    path.write_text(USER_FILE.replace("u2\t30", "u2\t3O"), encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:3: age '3O' is not a whole number$"):
        run_ctr_samples(config, dataset_dir, features_dir, tmp_path / "runs", user_attributes_path=path)
    assert not (tmp_path / "runs" / "ctr").exists() or not any((tmp_path / "runs" / "ctr").iterdir())


def test_the_workflow_stage_takes_item_clusters_from_the_real_features_job(rated, tmp_path):
    from beam_jobs.features import run_features
    from tfrs_llmrec.data.features import SemanticFeatures
    from tfrs_llmrec.workflow.stages import ctr_samples

    _, config, dataset_dir, _, _ = rated
    real = experiment(config.data)
    real.features = from_dict(FeaturesConfig, {"semantic_ids": {"num_levels": 2, "codebook_size": 3, "latent_dim": 4,
                                                                "hidden_dims": [16], "epochs": 5}})
    features_dir = run_features(real.features, PreparedDataset.open(dataset_dir), seed=real.seed,
                                output_dir=tmp_path)
    root = ctr_samples(real, dataset_dir, features_dir, tmp_path)
    clusters = SemanticFeatures.open(features_dir).item_semantic_ids[:, 0]
    for split in spec.SPLITS:
        arrays = CtrDataset.open(root).arrays(split)
        np.testing.assert_array_equal(arrays["item_cluster"], clusters[arrays["item_index"]])
    assert CtrDataset.open(root).manifest["features"]["config_hash"] == features_dir.name.rsplit("-", 1)[1]


# ---------------------------------------------------------------- implicit feedback: sampled negatives


def skewed_log(num_users: int = 120, num_items: int = 40, per_user: int = 6, seed: int = 3) -> str:
    """Item i is chosen with weight 1 / (i + 1) (a long tail); no ratings."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, num_items + 1)
    lines = ["user_id,item_id,timestamp"]
    for user in range(num_users):
        for position, item in enumerate(rng.choice(num_items, per_user, replace=False, p=weights / weights.sum())):
            lines.append(f"u{user:03d},i{item:02d},{position}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def implicit(tmp_path_factory):
    directory = tmp_path_factory.mktemp("implicit")
    data, dataset_dir, features_dir = prepare(directory, skewed_log(), items=None, label=None)
    config = experiment(data, split_ratios=[0.8, 0.1, 0.1], negatives_per_positive=4, max_history=4)
    root = run_ctr_samples(config, dataset_dir, features_dir, directory / "runs")
    return directory, config, dataset_dir, features_dir, root


def test_implicit_positives_get_their_negatives_in_the_same_split_and_time(implicit):
    _, _, dataset_dir, _, root = implicit
    samples = CtrDataset.open(root)
    assert not samples.stats["has_ratings"]
    dataset = PreparedDataset.open(dataset_dir)
    own = {}
    for split in spec.SPLITS:
        for batch in dataset.interactions(split, 1024):
            for user, item in zip(batch["user_index"].numpy(), batch["item_index"].numpy()):
                own.setdefault(int(user), set()).add(int(item))
    for split in spec.SPLITS:
        arrays = samples.arrays(split)
        positives = arrays["label"] == 1.0
        assert (~positives).sum() == 4 * positives.sum() == 4 * samples.stats["positives"][split]
        assert np.all(arrays["rating"] == arrays["label"])
        for user, item, label in zip(arrays["user_index"], arrays["item_index"], arrays["label"]):
            assert (int(item) in own[int(user)]) == (label == 1.0)  # a negative is never a user's item
        # Each negative shares the timestamp (and history) of a positive of its user and split.
        clicks = {(int(u), int(t)): history.tolist() for u, t, history, label in
                  zip(arrays["user_index"], arrays["timestamp"], arrays["history"], arrays["label"]) if label == 1.0}
        for user, timestamp, history in zip(arrays["user_index"], arrays["timestamp"], arrays["history"]):
            assert clicks[(int(user), int(timestamp))] == history.tolist()
    assert samples.stats["negatives_sampled"] == {split: 4 * count for split, count in
                                                  samples.stats["positives"].items()}


def test_negatives_follow_training_popularity_to_the_power_075(implicit):
    _, _, _, _, root = implicit
    samples = CtrDataset.open(root)
    splits = [samples.arrays(split) for split in spec.SPLITS]
    train = splits[0]
    popularity = np.bincount(train["item_index"][train["label"] == 1.0], minlength=samples.num_items).astype(float)
    observed = sum(np.bincount(arrays["item_index"][arrays["label"] == 0.0], minlength=samples.num_items)
                   for arrays in splits)
    assert observed[popularity == 0].sum() == 0  # items never seen in training are never drawn

    def expected_counts(power):
        """Per item, the expected draws when each user samples from popularity ** power without their items."""
        expected = np.zeros(samples.num_items)
        for user in np.unique(train["user_index"]):
            own = np.concatenate([arrays["item_index"][(arrays["user_index"] == user) & (arrays["label"] == 1.0)]
                                  for arrays in splits])
            drawn = sum(int(((arrays["user_index"] == user) & (arrays["label"] == 0.0)).sum()) for arrays in splits)
            allowed = popularity ** power
            allowed[own] = 0.0
            expected += drawn * allowed / allowed.sum()
        return expected

    def chi_square(expected):
        seen = expected > 5
        return float(((observed[seen] - expected[seen]) ** 2 / expected[seen]).sum()), int(seen.sum()) - 1

    statistic, degrees = chi_square(expected_counts(0.75))
    threshold = degrees + 5 * np.sqrt(2 * degrees)
    assert statistic < threshold, (statistic, degrees)
    # The test can tell: raw popularity or uniform sampling are rejected.
    assert chi_square(expected_counts(1.0))[0] > threshold and chi_square(expected_counts(0.0))[0] > threshold


def test_same_config_writes_identical_samples_and_the_seed_changes_the_negatives(implicit, tmp_path):
    _, config, dataset_dir, features_dir, root = implicit
    again = run_ctr_samples(config, dataset_dir, features_dir, tmp_path / "again")
    names = sorted(path.relative_to(root).as_posix() for path in root.rglob("*.tfrecord"))
    assert len(names) == 3 * 2
    for name in names:
        assert (again / name).read_bytes() == (root / name).read_bytes(), name
    config.seed += 1
    try:
        reseeded = run_ctr_samples(config, dataset_dir, features_dir, tmp_path / "again")
    finally:
        config.seed -= 1
    assert reseeded != again
    first, second = CtrDataset.open(root).arrays("train"), CtrDataset.open(reseeded).arrays("train")
    assert np.array_equal(first["label"], second["label"])
    assert not np.array_equal(first["item_index"], second["item_index"])


# ---------------------------------------------------------------- MovieLens-100K


def test_movielens_100k(tmp_path):
    config = ExperimentConfig(name="ml", seed=42)
    dataset_dir = run_ingestion(config.data, tmp_path, seed=42)
    dataset = PreparedDataset.open(dataset_dir)
    codes = np.random.default_rng(0).integers(0, 32, size=(dataset.num_items, 2))
    features_dir = write_fake_features(tmp_path / "features", codes, dataset.num_users)
    root = run_ctr_samples(config, dataset_dir, features_dir, tmp_path)
    samples = CtrDataset.open(root)
    stats = samples.stats
    total = sum(stats["impressions"].values())
    assert total == sum(dataset.stats["interactions"].values())
    assert 0.5 < sum(stats["positives"].values()) / total < 0.6
    assert stats["num_users"] == 943 and stats["users_with_attributes"] == 943
    test = samples.arrays("test")
    assert np.all(test["user_attributes"] > 0)
    assert samples.attributes["occupation"] == 22 and samples.attributes["gender"] == 3
    assert samples.attributes["genres"] == 20 and samples.max_genres == 6
    assert np.mean(test["item_year"] > 0) > 0.99 and np.all(test["item_cluster"] == codes[test["item_index"], 0])
    assert set(np.unique(test["user_activity"])) <= set(range(config.ctr.activity_buckets))
