"""data.split "users" (EIMF's / ComiRec's protocol), run for real (FnApiRunner) on a hand-made log:
users split into train/valid/test groups, held-out users' first 80% as input, the rest as targets."""

import json
import random

import numpy as np
import pytest

from beam_jobs.ctr import run_ctr_samples
from beam_jobs.ingest import input_cut, run_ingestion, user_group_sizes
from tests.beam_jobs.test_ctr import experiment, write_fake_features
from tests.beam_jobs.test_ingest import read_split
from tests.data import csv_config, write_three_user_log
from tfrs_llmrec.config.loader import ConfigError, from_dict
from tfrs_llmrec.config.schema import DataConfig
from tfrs_llmrec.data import DataError, PreparedDataset, spec

MAX_HISTORY = 4  # held-out inputs of 4..9 items: longer ones are truncated
# Twenty users u00..u19 with 5..12 distinct items each, plus two one-item users that split "users"
# drops (min_sequence_length 2). 20 kept users at 0.8/0.1/0.1: floor(16) = 16 train, floor(18) = 18
# so 2 valid, 2 test.
LENGTHS = [5 + user % 8 for user in range(20)]
# The input cut floor(0.8 n) clamped to [1, n - 1], by hand: n -> inputs.
CUTS = {5: 4, 6: 4, 7: 5, 8: 6, 9: 7, 10: 8, 11: 8, 12: 9}


def make_log(order_seed: int) -> tuple:
    """(csv text with the rows in an `order_seed`-shuffled order, {user: items in time order})."""
    rng = random.Random(11)
    events = []
    for user, length in enumerate(LENGTHS):
        items = rng.sample([f"i{n:02d}" for n in range(30)], length)
        times = rng.sample(range(1000, 5000), length)
        events += [(f"u{user:02d}", item, time) for item, time in zip(items, times)]
    events += [("s1", "i00", 7), ("s2", "i29", 9)]
    timelines = {}
    for user, item, time in sorted(events, key=lambda event: (event[0], event[2])):
        timelines.setdefault(user, []).append(item)
    random.Random(order_seed).shuffle(events)
    text = "user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in events)
    return text, timelines


def ingest(directory, order_seed=0, **overrides):
    directory.mkdir(parents=True, exist_ok=True)
    text, timelines = make_log(order_seed)
    (directory / "log.csv").write_text(text, encoding="utf-8")
    settings = {"split": "users", "max_history": MAX_HISTORY, "active_user_fraction": 0.8, "columns": {"label": None},
                **overrides}
    root = run_ingestion(csv_config(directory / "log.csv", **settings), directory / "out", seed=0)
    return PreparedDataset.open(root), timelines


def groups_of(dataset):
    """{raw user id: group}, read off the records: the split each user has interaction records in."""
    users = dataset.user_ids()
    groups = {}
    for split in spec.SPLITS:
        for user, *_ in read_split(dataset.root, split, MAX_HISTORY):
            assert groups.setdefault(users[user], split) == split, f"{users[user]} has records in two splits"
    return groups


@pytest.fixture(scope="module")
def users_split(tmp_path_factory):
    dataset, timelines = ingest(tmp_path_factory.mktemp("users_split"))
    return dataset, timelines, groups_of(dataset)


# ---------------------------------------------------------------- pure helpers


def test_user_group_sizes_floor_the_cumulative_cuts_and_keep_each_group():
    assert user_group_sizes(20, [0.8, 0.1, 0.1]) == (16, 2, 2)
    assert user_group_sizes(10, [0.7, 0.2, 0.1]) == (7, 2, 1)  # 0.7 + 0.2 is 0.8999..., still 9
    assert user_group_sizes(7, [0.8, 0.1, 0.1]) == (5, 1, 1)  # floor(5.6), floor(6.3)
    assert user_group_sizes(3, [0.8, 0.1, 0.1]) == (1, 1, 1)  # clamped: every group keeps a user
    assert user_group_sizes(5, [0.1, 0.1, 0.8]) == (1, 1, 3)
    assert user_group_sizes(14, [0.8, 0.1, 0.1]) == (11, 1, 2)  # floor(11.2), floor(12.6): no rounding up
    assert user_group_sizes(9, [0.5, 0.3, 0.2]) == (4, 3, 2)  # floor(4.5), floor(7.2)


def test_input_cut_floors_and_keeps_one_input_and_one_target():
    assert {n: input_cut(n, 0.8) for n in CUTS} == CUTS
    assert input_cut(2, 0.8) == 1 and input_cut(2, 0.01) == 1 and input_cut(10, 0.99) == 9


# ---------------------------------------------------------------- the groups


def test_groups_are_disjoint_exact_and_cover_every_kept_user(users_split):
    dataset, timelines, groups = users_split
    kept = sorted(user for user in timelines if user.startswith("u"))
    assert sorted(dataset.user_ids()) == kept == sorted(groups)  # s1, s2 dropped; each user in one group
    sizes = {split: sum(1 for group in groups.values() if group == split) for split in spec.SPLITS}
    assert sizes == {"train": 16, "valid": 2, "test": 2}
    stats = dataset.stats
    assert stats["split"] == "users" and stats["users_per_split"] == sizes
    assert stats["dropped"]["short_sequences"] == 2 and stats["dropped"]["short_sequence_interactions"] == 2
    assert stats["holdout_input_fraction"] == 0.8 and stats["min_sequence_length"] == 2 and stats["split_seed"] == 0


def test_assignment_is_seeded_and_independent_of_input_order(users_split, tmp_path):
    dataset, _, groups = users_split
    reordered, _ = ingest(tmp_path / "reordered", order_seed=5)
    assert groups_of(reordered) == groups
    for path in sorted(dataset.root.rglob("*.tfrecord")):  # byte-identical, whatever the row order
        relative = path.relative_to(dataset.root)
        assert (reordered.root / relative).read_bytes() == path.read_bytes(), relative
    reseeded, _ = ingest(tmp_path / "reseeded", split_seed=1)
    assert reseeded.root.name != dataset.root.name  # the seed is part of the data config
    other = groups_of(reseeded)
    assert other != groups
    assert sorted(other.values()) == sorted(groups.values())  # same sizes, other users


def test_train_split_holds_only_train_users_whole_timelines(users_split):
    dataset, timelines, groups = users_split
    users, items = dataset.user_ids(), dataset.item_ids()
    train = read_split(dataset.root, "train", MAX_HISTORY)
    assert {users[user] for user, *_ in train} == {user for user, group in groups.items() if group == "train"}
    by_user = {}
    for user, item, timestamp, _, history, length in sorted(train, key=lambda row: (row[0], row[2])):
        earlier = by_user.setdefault(users[user], [])
        expected = earlier[::-1][:MAX_HISTORY]
        assert [items[i] for i in history[:length]] == expected and length == len(expected)
        earlier.append(items[item])
    assert by_user == {user: timelines[user] for user, group in groups.items() if group == "train"}
    train_items = dataset.split_items("train")
    for index, user in enumerate(users):
        assert [items[i] for i in train_items.row(index)] == (timelines[user] if groups[user] == "train" else [])


def test_held_out_records_are_the_last_items_with_the_input_as_history(users_split):
    dataset, timelines, groups = users_split
    users, items = dataset.user_ids(), dataset.item_ids()
    for split in ("valid", "test"):
        records = read_split(dataset.root, split, MAX_HISTORY)
        held_out = sorted(user for user, group in groups.items() if group == split)
        assert len(held_out) == 2
        assert max(CUTS[len(timelines[user])] for user in held_out) > MAX_HISTORY  # a truncated input
        for user in held_out:
            timeline = timelines[user]
            cut = CUTS[len(timeline)]
            inputs, targets = timeline[:cut], timeline[cut:]
            mine = [row for row in records if users[row[0]] == user]
            assert sorted(items[row[1]] for row in mine) == sorted(targets) and len(mine) == len(targets)
            expected = [dataset.item_ids().index(item) for item in inputs[::-1][:MAX_HISTORY]]
            for *_, history, length in mine:
                assert history == expected + [spec.PAD_ITEM] * (MAX_HISTORY - len(expected))
                assert length == len(expected)
            index = users.index(user)
            assert [items[i] for i in dataset.split_inputs(split).row(index)] == inputs
            assert [items[i] for i in dataset.split_items(split).row(index)] == targets
        other = "test" if split == "valid" else "valid"
        inputs_elsewhere = [users[u] for u in range(len(users)) if len(dataset.split_inputs(split).row(u))]
        assert sorted(inputs_elsewhere) == held_out  # no inputs for train users or the other group
        assert not any(groups[user] == other for user in inputs_elsewhere)


def test_eval_targets_and_query_histories_use_the_inputs(users_split):
    dataset, timelines, groups = users_split
    users, items = dataset.user_ids(), dataset.item_ids()
    index_of = {item: index for index, item in enumerate(items)}
    for split in ("valid", "test"):
        held_out = sorted(users.index(user) for user, group in groups.items() if group == split)
        targets = dataset.eval_targets(split)
        assert targets.users.tolist() == held_out
        histories, lengths = dataset.query_histories(split)
        for row, user in enumerate(held_out):
            timeline = timelines[users[user]]
            cut = CUTS[len(timeline)]
            assert targets.targets.row(row).tolist() == sorted(index_of[item] for item in timeline[cut:])
            assert targets.exclude.row(row).tolist() == sorted(index_of[item] for item in timeline[:cut])
            recent = [index_of[item] for item in timeline[:cut][::-1][:MAX_HISTORY]]
            assert histories[user].tolist() == recent + [spec.PAD_ITEM] * (MAX_HISTORY - len(recent))
            assert lengths[user] == len(recent)
        for batch in dataset.interactions(split, 64):  # the same history the split's records carry
            assert np.array_equal(batch["history"].numpy(), histories[batch["user_index"].numpy()])
    # A test user is unknown at valid time, a valid user has nothing more at test time than its input.
    valid_histories, valid_lengths = dataset.query_histories("valid")
    for user, group in groups.items():
        if group == "test":
            assert valid_lengths[users.index(user)] == 0


def test_stats_count_train_users_only_and_activity_from_known_items(users_split):
    dataset, timelines, groups = users_split
    users, items = dataset.user_ids(), dataset.item_ids()
    stats = dataset.stats
    expected_items = [0] * len(items)
    for user, group in groups.items():
        if group == "train":
            for item in timelines[user]:
                expected_items[items.index(item)] += 1
    assert stats["item_train_counts"] == expected_items
    assert stats["user_train_counts"] == [len(timelines[u]) if groups[u] == "train" else 0 for u in users]
    known = [len(timelines[u]) if groups[u] == "train" else CUTS[len(timelines[u])] for u in users]
    # Top 80% of 20 users = 16 by known items, ties to the lower index.
    active = sorted(range(len(users)), key=lambda u: (-known[u], u))[:16]
    assert stats["user_is_active"] == [u in active for u in range(len(users))]
    # Discriminating: held-out users (no train items) rank by their inputs, above 5-item train users.
    assert any(stats["user_is_active"][u] for u in range(len(users)) if groups[users[u]] != "train")
    assert stats["user_activity_from"] == "known_items"
    lengths = {split: [len(timelines[u]) for u in users if groups[u] == split] for split in spec.SPLITS}
    assert stats["interactions"] == {"train": sum(lengths["train"]),
                                     "valid": sum(n - CUTS[n] for n in lengths["valid"]),
                                     "test": sum(n - CUTS[n] for n in lengths["test"])}
    assert stats["input_interactions"] == {"valid": sum(CUTS[n] for n in lengths["valid"]),
                                           "test": sum(CUTS[n] for n in lengths["test"])}
    assert stats["total_interactions"] == sum(LENGTHS)
    assert dataset.manifest["counts"]["interactions"] == stats["interactions"]


def test_min_sequence_length_drops_and_counts_short_users(tmp_path):
    dataset, timelines = ingest(tmp_path, min_sequence_length=7)
    short = [user for user, timeline in timelines.items() if len(timeline) < 7]
    assert len(short) == 2 + 6  # s1, s2 and the 6 users of 5 or 6 items
    assert sorted(dataset.user_ids()) == sorted(set(timelines) - set(short))
    assert dataset.stats["dropped"]["short_sequences"] == 8
    assert dataset.stats["dropped"]["short_sequence_interactions"] == sum(len(timelines[user]) for user in short)
    assert dataset.stats["users_per_split"] == {"train": 11, "valid": 1, "test": 2}  # 14 users: floor(11.2), floor(12.6)


def test_too_few_users_for_three_groups_is_a_data_error(tmp_path):
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp\na,x,1\na,y,2\nb,x,3\nb,y,4\nc,x,5\n")
    with pytest.raises(DataError, match=r"log\.csv: data\.split 'users' needs a user in each of train, valid and test"):
        run_ingestion(csv_config(tmp_path / "log.csv", split="users", columns={"label": None}), tmp_path / "out",
                      seed=0)


# ---------------------------------------------------------------- other splits and consumers


def test_leave_one_out_records_have_no_inputs_and_activity_from_train(tmp_path):
    path = write_three_user_log(tmp_path)
    dataset = PreparedDataset.open(run_ingestion(csv_config(path), tmp_path / "out", seed=0))
    for split in ("valid", "test"):
        assert dataset.split_inputs(split).indices.size == 0
    for shard in dataset.shard_files("users"):  # written exactly as before the input features existed
        with open(shard, "rb") as handle:
            assert b"input_items" not in handle.read()
    stats = dataset.stats
    assert stats["user_activity_from"] == "train_items" and stats["dropped"]["short_sequences"] == 0
    assert stats["users_per_split"] == {"train": 3, "valid": 2, "test": 2}
    assert stats["input_interactions"] == {"valid": 0, "test": 0}
    assert stats["holdout_input_fraction"] is None and stats["total_interactions"] == 9
    assert dataset.split_method == "leave_one_out"


@pytest.mark.parametrize("settings, key, message", [
    ({"holdout_input_fraction": 1.0}, "holdout_input_fraction", "must lie strictly between 0 and 1"),
    ({"holdout_input_fraction": 0.0}, "holdout_input_fraction", "must lie strictly between 0 and 1"),
    ({"holdout_input_fraction": 1.5}, "holdout_input_fraction", ""),
    ({"split": "users", "split_ratios": [0.9, 0.1, 0.0]}, "split_ratios", "under split 'users'"),
    ({"split": "users", "split_ratios": [0.0, 0.5, 0.5]}, "split_ratios", "under split 'users'"),
    ({"min_sequence_length": 1}, "min_sequence_length", ""),
])
def test_bad_users_split_settings_name_the_key(settings, key, message):
    with pytest.raises(ConfigError, match=rf"{key}: .*{message}"):
        from_dict(DataConfig, settings)


def test_other_splits_accept_an_empty_holdout_group():
    assert from_dict(DataConfig, {"split": "ratio", "split_ratios": [0.9, 0.1, 0.0]}).split == "ratio"


def test_ctr_samples_refuse_a_users_split_dataset(users_split, tmp_path):
    dataset, _, _ = users_split
    features = write_fake_features(tmp_path / "features", [[0, 7]] * dataset.num_items, dataset.num_users)
    config = experiment(from_dict(DataConfig, dataset.manifest["data_config"]))
    with pytest.raises(DataError, match=r"data\.split 'users'"):
        run_ctr_samples(config, dataset.root, features, tmp_path / "runs")
    assert not (tmp_path / "runs" / "ctr").exists() or not list((tmp_path / "runs" / "ctr").iterdir())
