"""scripts/parity/export_atomic.py: the RecBole benchmark files hold exactly our splits."""

import json
from pathlib import Path

import pytest
import yaml

from beam_jobs.ingest import run_ingestion
from tests.data import csv_config, write_three_user_log
from tests.scripts import load_script
from tfrs_llmrec.data import PreparedDataset, load_eval_targets

SPLITS = ("train", "valid", "test")


export_atomic = load_script("scripts/parity/export_atomic.py", "parity_export_atomic")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The three-user log ingested (leave-one-out, by the exporter through the run config) and exported."""
    directory = tmp_path_factory.mktemp("parity")
    log_path = write_three_user_log(directory)
    config = {"name": "tiny", "output_dir": str(directory / "runs"),
              "data": {"dataset": "csv", "path": str(log_path), "k_core": 0, "max_history": 2, "num_shards": 2,
                       "columns": {"label": "rating"}}}
    config_path = directory / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    export_atomic.main([str(config_path), "--out", str(directory / "atomic"), "--name", "tiny"])
    return directory / "atomic"


def read_inter(path: Path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "user_id:token\titem_id:token"
    return [tuple(int(value) for value in line.split("\t")) for line in lines[1:]]


def shard_pairs(dataset: PreparedDataset, split: str):
    """(user, item) pairs of the split's interaction shards: the records our trainer reads, a
    different source from the user records the exporter reads."""
    return sorted((int(user), int(item)) for batch in dataset.interactions(split, 4)
                  for user, item in zip(batch["user_index"].numpy(), batch["item_index"].numpy()))


def test_each_file_holds_exactly_its_split(exported):
    summary = json.loads((exported / "tiny" / "export.json").read_text(encoding="utf-8"))
    dataset = PreparedDataset.open(summary["dataset_dir"])
    rows = {split: read_inter(exported / "tiny" / f"tiny.{split}.inter") for split in SPLITS}
    # Users a..e -> items 0..4, u1..u3 -> users 0..2; u1's second `a` is a duplicate; u3 has two
    # interactions, both train; users ascending, each user's items in time order (u3: c then a).
    assert rows == {"train": [(0, 0), (0, 1), (1, 1), (2, 2), (2, 0)], "valid": [(0, 2), (1, 0)],
                    "test": [(0, 3), (1, 4)]}
    for split in SPLITS:
        assert sorted(rows[split]) == shard_pairs(dataset, split)
    assert summary == {"name": "tiny", "dataset_dir": str(dataset.root), "split": "leave_one_out", "num_users": 3,
                       "num_items": 5, "interactions": {split: len(rows[split]) for split in SPLITS}}


def test_recbole_masks_are_our_evaluator_exclusions(exported):
    """RecBole's full-sort evaluation masks a user's items of the earlier benchmark files (valid:
    train; test: train + valid): our evaluator must exclude exactly those."""
    summary = json.loads((exported / "tiny" / "export.json").read_text(encoding="utf-8"))
    rows = {split: read_inter(exported / "tiny" / f"tiny.{split}.inter") for split in SPLITS}
    for split, earlier in (("valid", ("train",)), ("test", ("train", "valid"))):
        targets = load_eval_targets(summary["dataset_dir"], split)
        for position, user in enumerate(targets.users.tolist()):
            masked = sorted(item for part in earlier for row_user, item in rows[part] if row_user == user)
            assert targets.exclude.row(position).tolist() == masked
            assert targets.targets.row(position).tolist() == sorted(item for row_user, item in rows[split]
                                                                    if row_user == user)
        assert sorted(targets.users.tolist()) == sorted({user for user, _ in rows[split]})


def test_the_export_is_published_whole(exported):
    assert [path.name for path in exported.iterdir()] == ["tiny"]
    assert sorted(path.name for path in (exported / "tiny").iterdir()) == [
        "export.json", "tiny.test.inter", "tiny.train.inter", "tiny.valid.inter"]


def test_split_users_is_refused(tmp_path):
    log_path = write_three_user_log(tmp_path)
    root = run_ingestion(csv_config(log_path, split="users"), tmp_path / "out", seed=0)
    with pytest.raises(SystemExit, match="split 'users'"):
        export_atomic.export_atomic(PreparedDataset.open(root), tmp_path / "atomic", "tiny")
    assert not (tmp_path / "atomic" / "tiny").exists()

