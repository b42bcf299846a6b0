"""The Beam ingestion job, run for real (FnApiRunner) on tiny hand-made logs and on MovieLens-100K."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import beam_jobs.ingest as ingest
from beam_jobs.ingest import id_sort_key, run_ingestion, split_sizes, top_fraction_flags
from tests.data import csv_config, write_three_user_log
from tfrs_llmrec.config.schema import DataConfig
from tfrs_llmrec.data import DataError, PreparedDataset
from tfrs_llmrec.data import spec


def read_split(root, split, max_history):
    files = sorted((root / split).glob("*.tfrecord"))
    features = spec.interaction_features(max_history)
    rows = []
    for record in tf.data.TFRecordDataset([str(path) for path in files]):
        parsed = {key: value.numpy() for key, value in tf.io.parse_single_example(record, features).items()}
        rows.append((int(parsed["user_index"]), int(parsed["item_index"]), int(parsed["timestamp"]),
                     float(parsed["label"]), parsed["history"].tolist(), int(parsed["history_length"])))
    return sorted(rows)


@pytest.fixture(scope="module")
def three_user_dataset(tmp_path_factory):
    directory = tmp_path_factory.mktemp("three_users")
    log_path = write_three_user_log(directory)
    config = csv_config(log_path, columns={"items_path": str(directory / "items.csv"), "genres": "genres"})
    root = run_ingestion(config, directory / "out", seed=7)
    return config, root


# ---------------------------------------------------------------- pure helpers


def test_split_sizes_leave_one_out_and_ratio():
    assert split_sizes(5, "leave_one_out", []) == (3, 1, 1)
    assert split_sizes(3, "leave_one_out", []) == (1, 1, 1)
    assert split_sizes(2, "leave_one_out", []) == (2, 0, 0)
    assert split_sizes(10, "ratio", [0.8, 0.1, 0.1]) == (8, 1, 1)
    assert split_sizes(10, "ratio", [0.6, 0.2, 0.2]) == (6, 2, 2)
    assert split_sizes(3, "ratio", [0.6, 0.2, 0.2]) == (2, 0, 1)
    assert split_sizes(1, "ratio", [0.1, 0.1, 0.8]) == (1, 0, 0)  # train keeps at least one


def test_ids_sort_numerically_then_as_text():
    assert sorted(["10", "b", "2", "a", "1"], key=id_sort_key) == ["1", "2", "10", "a", "b"]


def test_top_fraction_breaks_ties_by_index_and_keeps_at_least_one():
    flags, minimum = top_fraction_flags(np.array([3, 5, 5, 1, 0]), 0.4)
    assert flags.tolist() == [False, True, True, False, False] and minimum == 5
    flags, minimum = top_fraction_flags(np.array([2, 2, 1]), 0.0)
    assert flags.tolist() == [True, False, False] and minimum == 2


# ---------------------------------------------------------------- the hand-made log


def test_leave_one_out_split_and_histories_are_exact(three_user_dataset):
    _, root = three_user_dataset
    # (user, item, timestamp, label, history most recent first, history_length); max_history 2.
    assert read_split(root, "train", 2) == [
        (0, 0, 1, 5.0, [-1, -1], 0), (0, 1, 2, 4.0, [0, -1], 1),
        (1, 1, 5, 4.0, [-1, -1], 0),
        (2, 0, 2, 1.0, [2, -1], 1), (2, 2, 1, 2.0, [-1, -1], 0)]
    assert read_split(root, "valid", 2) == [(0, 2, 3, 3.0, [1, 0], 2), (1, 0, 6, 4.0, [1, -1], 1)]
    assert read_split(root, "test", 2) == [(0, 3, 4, 2.0, [2, 1], 2), (1, 4, 7, 3.0, [0, 1], 2)]
    assert (root / spec.USER_VOCAB_FILE).read_text() == "u1\nu2\nu3\n"
    assert (root / spec.ITEM_VOCAB_FILE).read_text() == "a\nb\nc\nd\ne\n"


def test_stats_and_manifest_of_the_hand_made_log(three_user_dataset):
    config, root = three_user_dataset
    stats = json.loads((root / spec.STATS_FILE).read_text())
    assert stats["num_users"] == 3 and stats["num_items"] == 5
    assert stats["interactions"] == {"train": 5, "valid": 2, "test": 2}
    assert stats["raw_rows"] == 10 and stats["dropped"]["duplicates"] == 1
    assert stats["item_train_counts"] == [2, 2, 1, 0, 0]
    assert stats["item_is_head"] == [True, False, False, False, False] and stats["head_item_min_count"] == 2
    assert stats["user_train_counts"] == [2, 1, 2] and stats["user_is_active"] == [True, False, False]
    assert stats["items_without_text"] == 1  # d has no row in items.csv
    assert stats["sparsity"] == pytest.approx(1 - 9 / 15)
    manifest = json.loads((root / spec.MANIFEST_FILE).read_text())
    assert manifest["config_hash"] == stats["config_hash"] == root.name.split("-")[-1]
    assert manifest["shards"]["train"] == ["train/part-00000-of-00002.tfrecord", "train/part-00001-of-00002.tfrecord"]
    for relative, entry in manifest["files"].items():
        assert (root / relative).stat().st_size == entry["size"]
    assert sum(manifest["files"][path]["records"] for path in manifest["shards"]["train"]) == 5
    assert manifest["data_config"]["columns"]["label"] == "rating"
    assert not list(root.parent.glob("*.partial-*"))


def test_a_complete_dataset_is_reused_without_running_beam(three_user_dataset, monkeypatch):
    config, root = three_user_dataset

    def no_pipeline(*args, **kwargs):
        raise AssertionError("the pipeline ran again")

    monkeypatch.setattr(ingest.beam, "Pipeline", no_pipeline)
    assert run_ingestion(config, root.parent.parent, seed=7) == root


def test_same_config_writes_byte_identical_records(three_user_dataset, tmp_path):
    config, root = three_user_dataset
    again = run_ingestion(config, tmp_path / "again", seed=123)
    names = sorted(path.relative_to(root).as_posix() for path in root.rglob("*")
                   if path.suffix in (".tfrecord", ".txt"))
    assert len(names) == 2 * 5 + 2
    for name in names:
        assert (again / name).read_bytes() == (root / name).read_bytes(), name
    rebuilt = run_ingestion(config, tmp_path / "again", seed=123, force=True)
    assert rebuilt == again and (again / spec.MANIFEST_FILE).is_file()
    assert [path.name for path in again.parent.iterdir()] == [again.name]  # no retired or partial copies
    assert all((again / name).read_bytes() == (root / name).read_bytes() for name in names)


def test_ratio_split_is_chronological_per_user(tmp_path):
    rows = ["user_id,item_id,timestamp"] + [f"long,i{n:02d},{n}" for n in range(10)] + [
        "short,i00,5", "short,i01,3", "short,i02,4"]
    path = tmp_path / "log.csv"
    path.write_text("\n".join(rows) + "\n")
    config = csv_config(path, split="ratio", split_ratios=[0.6, 0.2, 0.2], max_history=8, columns={"label": None})
    root = run_ingestion(config, tmp_path / "out", seed=0)
    stats = json.loads((root / spec.STATS_FILE).read_text())
    assert stats["interactions"] == {"train": 6 + 2, "valid": 2, "test": 2 + 1}
    valid = read_split(root, "valid", 8)
    # user 0 is "long" (items i00..i09 -> 0..9): valid holds i06, i07, each with all six train items.
    assert [(user, item) for user, item, *_ in valid] == [(0, 6), (0, 7)]
    assert all(history == [5, 4, 3, 2, 1, 0, -1, -1] for *_, history, _ in valid)
    test = read_split(root, "test", 8)
    assert [(user, item) for user, item, *_ in test] == [(0, 8), (0, 9), (1, 0)]
    assert test[2][4][:3] == [2, 1, -1]  # "short": i01 (t=3) then i02 (t=4) in train, i00 (t=5) is test
    assert all(label == 1.0 for *_, label, _, _ in test)


def test_kcore_prunes_over_two_rounds(tmp_path):
    # k=2: round 1 drops z (one user) and so user C; round 2 then drops x and so user A.
    pairs = [("A", "x"), ("A", "y"), ("B", "y"), ("B", "w"), ("C", "x"), ("C", "z"), ("D", "w"), ("D", "y")]
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for t, (u, i) in enumerate(pairs)))
    (tmp_path / "items.csv").write_text("item_id,title\nx,X\ny,Y\nz,Z\nw,W\n")
    config = csv_config(path, k_core=2, max_kcore_rounds=4, columns={"label": None, "items_path": str(tmp_path / "items.csv")})
    root = run_ingestion(config, tmp_path / "out", seed=0)
    stats = json.loads((root / spec.STATS_FILE).read_text())
    assert stats["kcore"]["rounds"] == 2 and stats["kcore"]["converged"]
    assert stats["kcore"]["interactions_removed_per_round"] == [2, 2]
    assert stats["kcore"]["users_removed_per_round"] == [1, 1]
    assert (stats["kcore"]["users_before"], stats["kcore"]["items_before"]) == (4, 4)
    assert (stats["num_users"], stats["num_items"], stats["dropped"]["kcore"]) == (2, 2, 4)
    assert (root / spec.USER_VOCAB_FILE).read_text() == "B\nD\n"
    assert PreparedDataset.open(root).item_table().ids == ["w", "y"]  # only items that survive


def test_too_few_kcore_rounds_is_reported_as_not_converged(tmp_path):
    pairs = [("A", "x"), ("A", "y"), ("B", "y"), ("B", "w"), ("C", "x"), ("C", "z"), ("D", "w"), ("D", "y")]
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for t, (u, i) in enumerate(pairs)))
    root = run_ingestion(csv_config(path, k_core=2, max_kcore_rounds=1, columns={"label": None}), tmp_path, seed=0)
    kcore = json.loads((root / spec.STATS_FILE).read_text())["kcore"]
    assert kcore["rounds"] == 1 and not kcore["converged"]


def test_min_rating_filters_before_dedupe(tmp_path):
    path = write_three_user_log(tmp_path)
    root = run_ingestion(csv_config(path, min_rating=3.0), tmp_path / "out", seed=0)
    stats = json.loads((root / spec.STATS_FILE).read_text())
    # Ratings >= 3: u1 a(5) b(4) c(3); u2 b(4) a(4) e(3); u3 has none left.
    assert stats["dropped"]["below_min_rating"] == 4 and stats["dropped"]["duplicates"] == 0
    assert stats["num_users"] == 2 and stats["interactions"] == {"train": 2, "valid": 2, "test": 2}


# ---------------------------------------------------------------- bad input


def test_malformed_row_raises_one_data_error_with_file_and_line(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\nu1,a,1\nu1,b\nu1,c,3\n")
    with pytest.raises(DataError) as raised:
        run_ingestion(csv_config(path, columns={"label": None}), tmp_path / "out", seed=0)
    assert str(raised.value) == f"{path}:3: expected 3 fields, got 2"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert not (tmp_path / "out" / "datasets").exists() or not list((tmp_path / "out" / "datasets").iterdir())


def test_bad_timestamp_raises_data_error_with_line(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\nu1,a,1\nu1,b,yesterday\n")
    with pytest.raises(DataError, match=rf"^{path}:3: timestamp 'yesterday' is neither a number nor ISO-8601$"):
        run_ingestion(csv_config(path, columns={"label": None}), tmp_path / "out", seed=0)


def test_unknown_column_names_file_column_and_available_columns(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,ts\nu1,a,1\n")
    with pytest.raises(DataError) as raised:
        run_ingestion(csv_config(path, columns={"label": None}), tmp_path / "out", seed=0)
    assert str(raised.value) == (f"{path}: unknown column 'timestamp' (set by data.columns.timestamp); "
                                 "available columns: user_id, item_id, ts")


@pytest.mark.parametrize("content, message", [("", "file is empty"),
                                               ("user_id,item_id,timestamp\n", "file has a header but no rows")])
def test_empty_file_names_the_file(tmp_path, content, message):
    path = tmp_path / "log.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=f"^{path}: {message}$"):
        run_ingestion(csv_config(path, columns={"label": None}), tmp_path / "out", seed=0)


def test_skip_mode_counts_dropped_rows_by_reason(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\nu1,a,1\nu1,b\nu1,c,later\nu1,d,4\n,e,5\n")
    root = run_ingestion(csv_config(path, bad_rows="skip", columns={"label": None}), tmp_path / "out", seed=0)
    stats = json.loads((root / spec.STATS_FILE).read_text())
    assert stats["dropped"]["bad_rows"] == 3
    assert stats["dropped"]["bad_rows_by_reason"] == {"bad_timestamp": 1, "empty_id": 1, "field_count": 1}
    assert stats["raw_rows"] == 5 and stats["num_items"] == 2


def test_skip_mode_still_fails_past_max_bad_rows(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\nu1,a,1\nu1,b\nu1,c,later\nu1,d,4\n")
    with pytest.raises(DataError, match=rf"^{path}: 2 malformed rows exceed data.max_bad_rows=1; the first, at line 3"):
        run_ingestion(csv_config(path, bad_rows="skip", max_bad_rows=1, columns={"label": None}),
                      tmp_path / "out", seed=0)
    assert not list((tmp_path / "out" / "datasets").iterdir())


# ---------------------------------------------------------------- interrupted runs


def test_failure_mid_pipeline_leaves_no_complete_looking_directory(tmp_path, monkeypatch):
    path = write_three_user_log(tmp_path)
    config = csv_config(path)

    def crash(*args):
        raise RuntimeError("worker lost")

    monkeypatch.setattr(ingest, "split_sizes", crash)
    with pytest.raises(Exception, match="worker lost"):
        run_ingestion(config, tmp_path / "out", seed=0)
    assert list((tmp_path / "out" / "datasets").iterdir()) == []
    monkeypatch.undo()
    root = run_ingestion(config, tmp_path / "out", seed=0)
    assert (root / spec.MANIFEST_FILE).is_file()


def test_rerun_removes_partial_directories_of_killed_runs(tmp_path):
    path = write_three_user_log(tmp_path)
    config = csv_config(path)
    target = ingest.prepared_dataset_dir(config, tmp_path / "out")
    target.parent.mkdir(parents=True)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    killed = target.with_name(target.name + ".partial-killed")
    (killed / "train").mkdir(parents=True)
    (killed / "train" / "part-00000-of-00002.tfrecord").write_bytes(b"half a record")
    (killed / ingest.OWNER_FILE).write_text(json.dumps({"pid": dead_pid, "host": ingest.socket.gethostname()}))
    running = target.with_name(target.name + ".partial-running")
    running.mkdir()
    (running / ingest.OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "host": ingest.socket.gethostname()}))
    with pytest.raises(DataError, match="incomplete prepared dataset"):
        PreparedDataset.open(killed)
    root = run_ingestion(config, tmp_path / "out", seed=0)
    assert root == target and not killed.exists()
    # A partial build whose process is alive belongs to a concurrent run and is left alone.
    assert sorted(path.name for path in target.parent.iterdir()) == sorted([target.name, running.name])


# ---------------------------------------------------------------- real data


def test_movielens_100k_known_counts(tmp_path):
    root = run_ingestion(DataConfig(dataset="ml-100k", k_core=5, num_shards=2), tmp_path, seed=0)
    stats = json.loads((root / spec.STATS_FILE).read_text())
    assert stats["raw_rows"] == 100_000 and stats["dropped"]["duplicates"] == 0
    assert (stats["kcore"]["users_before"], stats["kcore"]["items_before"]) == (943, 1682)
    # Every ML-100K user has >= 20 ratings, so 5-core keeps all 943; items with < 5 ratings go.
    assert stats["num_users"] == 943 and stats["num_items"] == 1349
    assert sum(stats["interactions"].values()) == 99_287
    assert stats["interactions"]["valid"] == stats["interactions"]["test"] == 943
    dataset = PreparedDataset.open(root)
    table = dataset.item_table()
    assert table.titles[dataset.item_ids().index("1")] == "Toy Story (1995)"
    assert table.genres[dataset.item_ids().index("1")] == ["Animation", "Children's", "Comedy"]
