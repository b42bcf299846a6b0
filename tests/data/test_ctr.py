"""CtrDataset, the reader of CTR samples, on samples the real Beam job wrote from a tiny rated log."""

import shutil

import numpy as np
import pytest
import tensorflow as tf

from beam_jobs.ctr import run_ctr_samples
from tests.beam_jobs.test_ctr import CLUSTERS, RATED_LOG, experiment, prepare
from tfrs_llmrec.data import DataError, spec
from tfrs_llmrec.data.ctr import CtrDataset, ctr_samples_dir
from tfrs_llmrec.data.ctr_spec import ACTIVITY_FEATURES, ITEM_GENRES, USER_ATTRIBUTES


@pytest.fixture(scope="module")
def samples_root(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ctr_reader")
    data, dataset_dir, features_dir = prepare(directory, RATED_LOG, CLUSTERS)
    config = experiment(data)
    root = run_ctr_samples(config, dataset_dir, features_dir, directory / "runs")
    assert root == ctr_samples_dir(config, dataset_dir, features_dir, directory / "runs")
    return root


def test_an_incomplete_directory_is_refused_naming_it(tmp_path):
    partial = tmp_path / "ml-100k-abc.partial-123"
    (partial / "train").mkdir(parents=True)
    with pytest.raises(DataError, match=rf"^{partial}: incomplete CTR samples: no manifest.json"):
        CtrDataset.open(partial)
    with pytest.raises(DataError, match="not a directory"):
        CtrDataset.open(tmp_path / "missing")


def test_sizes_and_shapes_come_from_the_manifest(samples_root):
    samples = CtrDataset.open(samples_root)
    assert [samples.num_examples(split) for split in spec.SPLITS] == [11, 3, 3]
    assert samples.max_history == 3 and samples.max_genres == 2 and samples.activity_buckets == 4
    assert samples.attributes == {"age": 1, "gender": 1, "occupation": 1, "genres": 4, "year": 7}
    assert samples.num_users == 3 and samples.num_items == 10
    assert samples.item_train_impressions().tolist() == [2, 1, 3, 1, 2, 1, 0, 0, 0, 1]
    assert samples.user_train_impressions().tolist() == [6, 3, 2]
    assert samples.item_is_head().sum() == 2 and samples.user_is_active().tolist() == [True, False, False]


def test_arrays_and_batches_hold_every_example_in_one_fixed_order(samples_root):
    samples = CtrDataset.open(samples_root)
    for split in spec.SPLITS:
        arrays = samples.arrays(split)
        assert len(arrays["label"]) == samples.num_examples(split)
        assert arrays["history"].shape == (samples.num_examples(split), 3)
        assert arrays[ITEM_GENRES].shape[1] == 2 and arrays[USER_ATTRIBUTES].shape[1] == 3
        for _ in range(2):
            batches = list(samples.batches(split, 2))
            for name, values in arrays.items():
                np.testing.assert_array_equal(np.concatenate([batch[name].numpy() for batch in batches]), values)
    assert set(ACTIVITY_FEATURES) <= set(samples.arrays("test"))


def test_training_epochs_are_seeded_and_parsed(samples_root):
    samples = CtrDataset.open(samples_root)
    epochs = samples.training_epochs("train", 4, seed=3, shuffle_buffer=100)
    assert epochs.steps_per_epoch == 2
    first = [batch["item_index"].numpy().tolist() for batch in epochs.dataset(0, 0)]
    again = [batch["item_index"].numpy().tolist() for batch in epochs.dataset(0, 0)]
    assert first == again and len(first) == 2 and all(len(batch) == 4 for batch in first)
    resumed = [batch["item_index"].numpy().tolist() for batch in epochs.dataset(0, 1)]
    assert resumed == first[1:]
    batch = epochs.sample_batch(2)
    assert batch["history"].shape == (2, 3) and batch["label"].dtype == tf.float32


def test_a_corrupt_shard_is_named(samples_root, tmp_path):
    copy = tmp_path / samples_root.name
    shutil.copytree(samples_root, copy)
    samples = CtrDataset.open(copy)
    shard = samples.shard_files("train")[0]
    data = bytearray(open(shard, "rb").read())
    data[20] ^= 0xFF  # same size, so only reading finds it
    open(shard, "wb").write(bytes(data))
    with pytest.raises(DataError, match=rf"^{shard}: corrupt TFRecord shard"):
        samples.arrays("train")
    epochs = samples.training_epochs("train", 2, seed=0, shuffle_buffer=10)
    with pytest.raises(tf.errors.DataLossError) as raised:
        for _ in epochs.dataset(0, 0):
            pass
    assert str(samples.explain_data_loss(raised.value, "train")).startswith(f"{shard}: corrupt TFRecord shard")
    open(shard, "ab").write(b"x")
    with pytest.raises(DataError, match="truncated or replaced"):
        CtrDataset.open(copy)


def _rewrite_shard(samples_root, tmp_path, edit):
    """A copy of the samples whose first train shard's first record went through `edit(features)`."""
    copy = tmp_path / samples_root.name
    shutil.copytree(samples_root, copy)
    samples = CtrDataset.open(copy)
    path = samples.shard_files("train")[0]
    records = [tf.train.Example.FromString(raw.numpy()) for raw in tf.data.TFRecordDataset(path)]
    edit(records[0].features.feature)
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record.SerializeToString())
    return CtrDataset.open(copy, check_sizes=False), path


def test_a_label_outside_zero_and_one_is_named_with_its_shard_and_record(samples_root, tmp_path):
    def set_label(feature):
        feature[spec.LABEL].float_list.value[:] = [4.0]

    samples, path = _rewrite_shard(samples_root, tmp_path, set_label)
    with pytest.raises(DataError, match=rf"^{path}: record 0: label 4.0 is not 0 or 1"):
        samples.check_labels("train")
    samples.check_labels("valid")  # the other splits are untouched


def test_records_without_labels_are_named_with_their_shard(samples_root, tmp_path):
    samples, path = _rewrite_shard(samples_root, tmp_path, lambda feature: feature.pop(spec.LABEL))
    with pytest.raises(DataError, match=rf"^{path}: records do not match the feature spec"):
        samples.check_labels("train")
