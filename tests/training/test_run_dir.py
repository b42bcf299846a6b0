"""The run directory: its reader of the training summary, and which recorded runs a config may
claim."""

import json
import shutil

import pytest
import yaml

from tfrs_llmrec.config import ExperimentConfig, config_hash, dump_yaml, from_dict, to_dict
from tfrs_llmrec.training.run_dir import (CONFIG_FILE, HASH_FILE, TRAIN_RESULT_FILE, RunConfigMismatch,
                                          claim_run_dir, read_train_result, training_identity)


def test_read_train_result_returns_the_written_summary(tmp_path):
    summary = {"model": "two_tower", "best_epoch": 3, "seconds": 12.5, "history": {"loss": [0.9, 0.7, 0.6]}}
    (tmp_path / TRAIN_RESULT_FILE).write_text(json.dumps(summary), encoding="utf-8")
    assert read_train_result(tmp_path) == summary


def test_read_train_result_is_empty_for_a_run_not_trained_here(tmp_path):
    (tmp_path / "metrics.json").write_text("{}", encoding="utf-8")
    assert read_train_result(tmp_path) == {}
    assert read_train_result(str(tmp_path)) == {}


def experiment(**train):
    return from_dict(ExperimentConfig, {"name": "x", "seed": 3, "train": {"learning_rate": 0.01, **train}})


def record_as_before_a_key_existed(run_dir, config, extra=None):
    """What an older version wrote: the config without `train.optimizer_epsilon`, added since (and
    `extra` keys that existed then), with the hash of exactly that."""
    recorded = yaml.safe_load(dump_yaml(config))
    del recorded["train"]["optimizer_epsilon"]
    for section, values in (extra or {}).items():
        recorded[section].update(values)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(recorded), encoding="utf-8")
    (run_dir / HASH_FILE).write_text(config_hash(training_identity(recorded)) + "\n", encoding="utf-8")
    (run_dir / "checkpoints").mkdir()


def test_a_run_recorded_before_a_key_was_added_is_the_same_run_at_its_default(tmp_path):
    config = experiment()
    record_as_before_a_key_existed(tmp_path, config)
    claim_run_dir(config, tmp_path)
    assert (tmp_path / "checkpoints").is_dir()  # kept: the run resumes
    assert (tmp_path / HASH_FILE).read_text().strip() == config_hash(training_identity(to_dict(config)))
    claim_run_dir(config, tmp_path)  # and the next claim reads the rewritten hash


def test_a_new_key_away_from_its_default_is_another_run(tmp_path):
    record_as_before_a_key_existed(tmp_path, experiment())
    with pytest.raises(RunConfigMismatch, match=r"train\.optimizer_epsilon: 1e-07 -> 1e-08"):
        claim_run_dir(experiment(optimizer_epsilon=1.0e-8), tmp_path)


def test_a_changed_value_is_named_even_when_a_key_was_added_since(tmp_path):
    record_as_before_a_key_existed(tmp_path, experiment())
    with pytest.raises(RunConfigMismatch, match=r"1 key\(s\) differ: train\.learning_rate: 0\.01 -> 0\.02"):
        claim_run_dir(experiment(learning_rate=0.02), tmp_path)


def test_a_key_removed_since_is_named(tmp_path):
    config = experiment()
    record_as_before_a_key_existed(tmp_path, config, extra={"train": {"warmup_epochs": 2}})
    with pytest.raises(RunConfigMismatch, match=r"train\.warmup_epochs: 2 -> '<absent>'"):
        claim_run_dir(config, tmp_path)
    assert (tmp_path / "checkpoints").is_dir()


def copy_of_a_run(tmp_path, config):
    """A recorded run with a checkpoint, copied whole into another directory (as a search's winning
    trial is promoted to the tuned config's seed run)."""
    trial = tmp_path / "trial-03"
    claim_run_dir(config, trial)
    (trial / "checkpoints").mkdir()
    (trial / "checkpoints" / "ckpt").write_text("weights", encoding="utf-8")
    copy = tmp_path / "tuned-seed3"
    shutil.copytree(trial, copy)
    return copy


def test_a_run_copied_under_another_name_is_the_same_training(tmp_path):
    copy = copy_of_a_run(tmp_path, experiment())
    renamed = from_dict(ExperimentConfig, {**to_dict(experiment()), "name": "tuned-seed3"})
    claim_run_dir(renamed, copy)
    assert (copy / "checkpoints" / "ckpt").read_text() == "weights"  # kept: the training is reused
    assert yaml.safe_load((copy / CONFIG_FILE).read_text())["name"] == "tuned-seed3"


def test_a_copied_run_claimed_with_another_seed_is_another_run(tmp_path):
    copy = copy_of_a_run(tmp_path, experiment())
    other_seed = from_dict(ExperimentConfig, {**to_dict(experiment()), "name": "tuned-seed3", "seed": 4})
    with pytest.raises(RunConfigMismatch, match=r"1 key\(s\) differ: seed: 3 -> 4"):
        claim_run_dir(other_seed, copy)
