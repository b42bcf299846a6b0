"""The seed aggregate: means and sample standard deviations of finished runs' metrics."""

import json
import os
import time

import pytest
import yaml

from tfrs_llmrec.config import ExperimentConfig, dump_yaml, from_dict
from tfrs_llmrec.workflow.seeds import (MissingRunMetricsError, aggregate_runs, load_run_metrics, mean_and_std,
                                        run_is_complete, seeds_of)


def write_run(run_dir, split, recall, tail_recall, buckets, seconds=1.0, best_epoch=3):
    run_dir.mkdir(parents=True)
    summary = {"overall": {"recall@20": recall, "num_users": 10}, "tail_items": {"recall@20": tail_recall},
               "by_popularity_bucket": buckets, "bucket_metric": "recall@20"}
    pop = {"overall": {"recall@20": 0.1, "num_users": 10}, "tail_items": {"recall@20": 0.0},
           "by_popularity_bucket": [0.0, 0.2], "bucket_metric": "recall@20"}
    metrics = {"experiment": run_dir.name, "split": split, "dataset": "d",
               "models": {"mf_bpr": {"summary": summary, "seconds": seconds}, "pop": {"summary": pop, "seconds": 0.5}}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "train_result.json").write_text(json.dumps({"best_epoch": best_epoch, "epochs_completed": 5,
                                                           "best_value": recall, "seconds": seconds}))
    return run_dir


def test_mean_and_std_by_hand():
    mean, std = mean_and_std([0.2, 0.3, 0.4])
    # sample std of (0.2, 0.3, 0.4): sqrt((0.01 + 0 + 0.01) / 2) = 0.1
    assert mean == pytest.approx(0.3) and std == pytest.approx(0.1)
    mean, std = mean_and_std([{"a": 1, "b": "x", "d": "y"}, {"a": 3, "b": "x", "c": 5, "d": "z"}])
    # A shared label is kept, differing ones are not; c is not in every run.
    assert mean == {"a": 2.0, "b": "x", "d": None} and std["a"] == pytest.approx(2 ** 0.5)
    assert std["b"] is None
    assert mean_and_std([[1, 2], [3, 4]])[0] == [2.0, 3.0]
    assert mean_and_std([True, False]) == (None, None)  # flags are not averaged
    assert mean_and_std([True, True]) == (True, None)
    assert mean_and_std([0.5]) == (0.5, 0.0)


def test_aggregate_of_three_runs(tmp_path):
    dirs = [write_run(tmp_path / "s42", "test", 0.30, 0.10, [0.1, 0.3], 10.0, 2),
            write_run(tmp_path / "s43", "test", 0.36, 0.16, [0.2, 0.4], 20.0, 4),
            write_run(tmp_path / "s44", "test", 0.33, 0.10, [0.3, 0.5], 30.0, 6)]
    payload = aggregate_runs(dirs, [42, 43, 44], "exp")
    model = payload["models"]["mf_bpr"]
    assert payload["split"] == "test" and payload["seeds"] == [42, 43, 44]
    assert model["summary"]["overall"]["recall@20"] == pytest.approx(0.33)
    assert model["std"]["overall"]["recall@20"] == pytest.approx(0.03)  # deviations -0.03, 0.03, 0
    assert model["summary"]["tail_items"]["recall@20"] == pytest.approx(0.12)
    # deviations -0.02, 0.04, -0.02: sqrt((0.0004 + 0.0016 + 0.0004) / 2)
    assert model["std"]["tail_items"]["recall@20"] == pytest.approx((0.0024 / 2) ** 0.5)
    assert model["summary"]["by_popularity_bucket"] == pytest.approx([0.2, 0.4])
    assert [run["overall"]["recall@20"] for run in model["per_seed"]] == [0.30, 0.36, 0.33]
    assert model["seconds"] == pytest.approx(20.0)
    assert payload["models"]["pop"]["std"]["overall"]["recall@20"] == pytest.approx(0.0, abs=1e-12)
    assert payload["training"]["best_epoch"] == [2, 4, 6]


def test_runs_without_metrics_are_named_together_before_any_is_read(tmp_path):
    finished = write_run(tmp_path / "s42", "test", 0.30, 0.10, [0.1, 0.3])
    unfinished, mistyped = tmp_path / "s43", tmp_path / "s4"
    unfinished.mkdir()
    (unfinished / "train_result.json").write_text("{}")
    with pytest.raises(MissingRunMetricsError, match=f"^no metrics.json in {unfinished}, {mistyped}$"):
        aggregate_runs([finished, unfinished, mistyped], [42, 43, 44], "exp")
    assert [run["experiment"] for run in load_run_metrics([finished, finished])] == ["s42", "s42"]


def test_runs_of_different_splits_are_refused(tmp_path):
    dirs = [write_run(tmp_path / "a", "valid", 0.3, 0.1, [0.1]), write_run(tmp_path / "b", "test", 0.3, 0.1, [0.1])]
    with pytest.raises(ValueError, match="different splits"):
        aggregate_runs(dirs, [1, 2], "exp")


def test_a_run_is_complete_only_for_its_exact_config_and_after_its_metrics(tmp_path):
    config = from_dict_config(seed=5)
    assert seeds_of(config, 3) == [5, 6, 7]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(dump_yaml(config))
    assert not run_is_complete(config, run_dir)  # no metrics yet
    (run_dir / "metrics.json").write_text("{}")
    assert run_is_complete(config, run_dir)
    assert not run_is_complete(from_dict_config(seed=6), run_dir)
    later = time.time() + 10
    os.utime(run_dir / "config.yaml", (later, later))  # re-claimed after the metrics: not finished
    assert not run_is_complete(config, run_dir)


def test_a_run_recorded_before_a_key_was_added_is_complete_at_the_keys_default(tmp_path):
    config = from_dict_config(seed=5)
    recorded = yaml.safe_load(dump_yaml(config))
    del recorded["train"]["optimizer_epsilon"]  # what the version before the key wrote
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(recorded))
    (run_dir / "metrics.json").write_text("{}")
    assert run_is_complete(config, run_dir)
    assert not run_is_complete(from_dict_config(seed=5, optimizer_epsilon=1.0e-8), run_dir)


def from_dict_config(seed, **train):
    return from_dict(ExperimentConfig, {"name": "x", "seed": seed, "train": train})


def add_cascade(run_dir, retriever_run, retrieval_recall, reranked_recall):
    path = run_dir / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["models"]["mf_bpr"]["cascade"] = {"retriever_run": retriever_run, "top_k": 100,
                                              "retrieval": {"recall@20": retrieval_recall},
                                              "reranked": {"recall@20": reranked_recall}}
    path.write_text(json.dumps(metrics))


def test_cascades_are_aggregated_over_seeds_and_must_be_in_every_run(tmp_path):
    dirs = [write_run(tmp_path / f"s{seed}", "test", 0.3, 0.1, [0.1]) for seed in (42, 43, 44)]
    for run_dir, (retrieval, reranked) in zip(dirs, [(0.20, 0.10), (0.22, 0.08), (0.24, 0.12)]):
        add_cascade(run_dir, f"runs/retriever-{run_dir.name}", retrieval, reranked)
    model = aggregate_runs(dirs, [42, 43, 44], "exp")["models"]["mf_bpr"]
    assert model["cascade"]["retrieval"]["recall@20"] == pytest.approx(0.22)
    assert model["cascade"]["reranked"]["recall@20"] == pytest.approx(0.10)
    # deviations -0.02, 0, 0.02 in both: sqrt(0.0008 / 2) = 0.02
    assert model["cascade_std"]["reranked"]["recall@20"] == pytest.approx(0.02)
    # each seed reranked its own retriever run: no single one to name; the shared top_k is kept
    assert model["cascade"]["retriever_run"] is None and model["cascade"]["top_k"] == 100
    assert "cascade" not in aggregate_runs([write_run(tmp_path / "plain", "test", 0.3, 0.1, [0.1])],
                                           [1], "exp")["models"]["mf_bpr"]
    with pytest.raises(ValueError, match="cascade in only some"):
        aggregate_runs([*dirs, tmp_path / "plain"], [42, 43, 44, 1], "exp")
