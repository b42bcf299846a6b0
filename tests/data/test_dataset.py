"""Readers of a prepared dataset: tf.data pipelines, eval targets, histories, integrity checks."""

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from beam_jobs.ingest import run_ingestion
from tests.data import csv_config, write_three_user_log
from tfrs_llmrec.data import DataError, PreparedDataset, load_eval_targets, spec


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    directory = tmp_path_factory.mktemp("prepared")
    log_path = write_three_user_log(directory)
    config = csv_config(log_path, columns={"items_path": str(directory / "items.csv"), "genres": "genres"})
    return run_ingestion(config, directory / "out", seed=0)


@pytest.fixture
def copy_of(prepared, tmp_path):
    return shutil.copytree(prepared, tmp_path / "copy")


def pairs(dataset):
    return sorted((int(u), int(i)) for batch in dataset for u, i in zip(batch["user_index"].numpy(),
                                                                          batch["item_index"].numpy()))


def test_interactions_have_the_spec_shapes_and_dtypes(prepared):
    dataset = PreparedDataset.open(prepared)
    batch = next(iter(dataset.interactions("train", 4)))
    assert {key: (value.dtype, tuple(value.shape)) for key, value in batch.items()} == {
        "user_index": (tf.int64, (4,)), "item_index": (tf.int64, (4,)), "timestamp": (tf.int64, (4,)),
        "label": (tf.float32, (4,)), "history": (tf.int64, (4, 2)), "history_length": (tf.int64, (4,))}
    assert pairs(dataset.interactions("train", 2)) == [(0, 0), (0, 1), (1, 1), (2, 0), (2, 2)]
    assert pairs(dataset.interactions("test", 8)) == [(0, 3), (1, 4)]


def test_seeded_shuffle_repeats_its_order(prepared):
    dataset = PreparedDataset.open(prepared)

    def order(seed):
        data = dataset.interactions("train", 1, shuffle=True, seed=seed, shuffle_buffer=16)
        return [(int(b["user_index"][0]), int(b["item_index"][0])) for b in data]

    assert order(3) == order(3)
    assert sorted(order(3)) == sorted(order(4))
    repeated = dataset.interactions("train", 2, repeat=True, drop_remainder=True).take(7)
    assert sum(int(batch["user_index"].shape[0]) for batch in repeated) == 14


@pytest.mark.parametrize("pipelines", [2, 3])
def test_input_context_splits_records_between_workers(prepared, pipelines):
    # Two shards: 2 workers read one file each; 3 workers take every third record instead.
    dataset = PreparedDataset.open(prepared)
    seen = []
    for worker in range(pipelines):
        context = tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=worker,
                                             num_replicas_in_sync=pipelines)
        seen.append(pairs(dataset.interactions("train", 2, input_context=context)))
    assert sorted(pair for worker in seen for pair in worker) == pairs(dataset.interactions("train", 8))
    if pipelines == 3:
        assert sorted(len(worker) for worker in seen) == [1, 2, 2]


def test_eval_targets_and_exclusions_as_csr(prepared):
    valid = load_eval_targets(prepared, "valid")
    assert valid.users.tolist() == [0, 1]
    assert valid.targets_indptr.tolist() == [0, 1, 2] and valid.targets_indices.tolist() == [2, 0]
    assert valid.exclude_indptr.tolist() == [0, 2, 3] and valid.exclude_indices.tolist() == [0, 1, 1]
    test = load_eval_targets(PreparedDataset.open(prepared), "test")
    assert test.users.tolist() == [0, 1] and test.targets_indices.tolist() == [3, 4]
    assert [test.exclude.row(i).tolist() for i in range(2)] == [[0, 1, 2], [0, 1]]
    for array in (test.users, test.targets_indptr, test.targets_indices, test.exclude_indptr, test.exclude_indices):
        assert isinstance(array, np.ndarray) and array.dtype == np.int64


def test_query_histories_match_each_split(prepared):
    dataset = PreparedDataset.open(prepared)
    histories, lengths = dataset.query_histories("valid")
    assert histories.tolist() == [[1, 0], [1, -1], [0, 2]] and lengths.tolist() == [2, 1, 2]
    histories, lengths = dataset.query_histories("test")
    assert histories.tolist() == [[2, 1], [0, 1], [0, 2]] and lengths.tolist() == [2, 2, 2]
    for batch in dataset.interactions("test", 8):  # the same history the split's examples carry
        assert np.array_equal(batch["history"].numpy(), histories[batch["user_index"].numpy()])


def test_item_table_popularity_and_vocabularies(prepared):
    dataset = PreparedDataset.open(prepared)
    table = dataset.item_table()
    assert table.ids == ["a", "b", "c", "d", "e"] == dataset.item_ids()
    assert table.titles == ["Alpha, the first", "Beta", "Gamma", "", "Epsilon"]
    assert table.genres == [["Drama", "Comedy"], [], ["Action"], [], ["Drama"]]
    assert dataset.item_popularity().tolist() == [2, 2, 1, 0, 0]
    assert dataset.item_is_head().tolist() == [True, False, False, False, False]
    assert dataset.user_ids() == ["u1", "u2", "u3"] and dataset.user_is_active().tolist() == [True, False, False]
    batch = next(iter(dataset.items(batch_size=8)))
    assert sorted(batch["item_index"].numpy().tolist()) == [0, 1, 2, 3, 4]
    assert isinstance(batch["genres"], tf.RaggedTensor)


def test_directory_without_manifest_is_incomplete(copy_of):
    (copy_of / spec.MANIFEST_FILE).unlink()
    with pytest.raises(DataError, match=f"^{copy_of}: incomplete prepared dataset"):
        PreparedDataset.open(copy_of)


def test_item_counts_that_disagree_with_the_train_split_are_refused(copy_of):
    # A build whose popularity counts include the held-out targets (train 5, valid 0, test 2 here).
    stats_path = copy_of / spec.STATS_FILE
    stats = json.loads(stats_path.read_text())
    assert sum(stats["item_train_counts"]) == stats["interactions"]["train"] == 5
    stats["item_train_counts"][3] += 1
    stats["item_train_counts"][4] += 1
    stats_path.write_text(json.dumps(stats))
    manifest_path = copy_of / spec.MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][spec.STATS_FILE]["size"] = stats_path.stat().st_size
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=f"^{stats_path}: item_train_counts sum to 7, but the train split has 5"):
        PreparedDataset.open(copy_of)


def test_truncated_shard_is_named_on_open_and_by_verify(copy_of):
    shard = copy_of / "train" / "part-00000-of-00002.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-7])
    with pytest.raises(DataError, match=f"^{shard}: .*truncated or replaced"):
        PreparedDataset.open(copy_of)
    with pytest.raises(DataError, match=f"^{shard}: corrupt TFRecord shard"):
        PreparedDataset.open(copy_of, check_sizes=False).verify()


def test_corrupt_shard_is_named_when_reading_fails(copy_of):
    shard = copy_of / "train" / "part-00001-of-00002.tfrecord"
    data = bytearray(shard.read_bytes())
    data[20] ^= 0xFF  # same size, so only the record checksum can tell
    shard.write_bytes(bytes(data))
    dataset = PreparedDataset.open(copy_of)
    with pytest.raises(tf.errors.DataLossError) as raised:
        for _ in dataset.interactions("train", 2):
            pass
    located = dataset.explain_data_loss(raised.value, "train")
    assert isinstance(located, DataError) and str(located).startswith(f"{shard}: corrupt TFRecord shard")


def test_corrupt_user_shard_fails_the_eval_helpers_with_its_name(copy_of):
    shard = copy_of / "users" / "users-00000-of-00002.tfrecord"
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"^{shard}: corrupt TFRecord shard"):
        PreparedDataset.open(copy_of).query_histories("valid")
