"""`llmrec run` with the sequential family on a tiny log: EIMF under the users protocol with its
offline explicit interests and its LLM-free export, and the errors for bad input."""

import json
import subprocess

import pytest

from tests.cli.test_run_semantic_models import experiment_with_item_texts

TWO_EPOCHS = ["--set", "train.epochs=2", "--set", "model.temperature=0.1", "--set", "model.sequence.num_interests=3"]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    return experiment_with_item_texts(tmp_path_factory.mktemp("sequence"), num_users=60)


def run_llmrec(llmrec_cmd, env, *args):
    return subprocess.run(llmrec_cmd + list(args), capture_output=True, text=True, env=env, timeout=900)


def read(path):
    return json.loads(path.read_text())


def test_eimf_on_the_users_protocol_trains_with_offline_interests_and_serves_without_text(
        experiment, llmrec_cmd, subprocess_env):
    tmp_path, config = experiment
    result = run_llmrec(llmrec_cmd, subprocess_env, "run", str(config), "--set", "name=eimf", "--set",
                        "model.name=eimf", "--set", "data.split=users", "--set", "eval.split=test", "--set",
                        "features.llm.interests_source=item_centroids", *TWO_EPOCHS)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "eimf"
    metrics = read(run_dir / "metrics.json")
    assert metrics["split"] == "test"
    summary = metrics["models"]["eimf"]["summary"]["overall"]
    # Held-out test users: 10% of 60, each with the last 20% of its items as targets.
    assert summary["num_users"] == 6 and summary["num_targets"] > 6
    assert summary["recall@20"] > metrics["models"]["pop"]["summary"]["overall"]["recall@20"]

    features = next((tmp_path / "runs" / "features").iterdir())
    assert read(features / "manifest.json")["llm"]["interests"]["source"] == "item_centroids (no LLM)"

    export = read(run_dir / "export" / "export.json")
    brute_force = export["models"]["brute_force"]
    assert brute_force["query_signature_inputs"] == ["history", "user_id"]  # no text, no LLM
    assert brute_force["query_shape"] == [3, 16]  # K interests of dimension d
    assert brute_force["query_max_abs_diff"] < 1e-5 and brute_force["score_max_abs_diff"] < 1e-5
    # One search per interest merged by max score equals exact search over max-over-interest scores.
    assert brute_force[f"recall@{export['k']}_vs_exact"] == 1.0
    assert brute_force["history_items_returned"] == 0
    assert export["models"]["scann"][f"recall@{export['k']}_vs_exact"] > 0.9


def test_sasrec_trains_and_exports_a_single_vector_query(experiment, llmrec_cmd, subprocess_env):
    tmp_path, config = experiment
    result = run_llmrec(llmrec_cmd, subprocess_env, "run", str(config), "--set", "name=sasrec",
                        "--set", "model.name=sasrec", "--set", "export.indexes=[brute_force]", *TWO_EPOCHS)
    assert result.returncode == 0, result.stderr[-3000:]
    export = read(tmp_path / "runs" / "sasrec" / "export" / "export.json")
    assert export["models"]["brute_force"]["query_shape"] == [16]
    assert export["models"]["brute_force"]["recall@10_vs_exact"] == 1.0


def test_eimf_without_explicit_interests_is_one_clear_error(experiment, llmrec_cmd, subprocess_env):
    tmp_path, config = experiment
    result = run_llmrec(llmrec_cmd, subprocess_env, "run", str(config), "--set", "name=eimf-no-interests",
                        "--set", "model.name=eimf", *TWO_EPOCHS)
    assert result.returncode != 0
    assert "features.llm.interests_source" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs" / "eimf-no-interests" / "metrics.json").exists()


def test_users_split_with_too_few_users_per_group_is_refused(experiment, llmrec_cmd, subprocess_env):
    tmp_path, config = experiment
    result = run_llmrec(llmrec_cmd, subprocess_env, "run", str(config), "--set", "name=bad-ratios",
                        "--set", "data.split=users", "--set", "data.split_ratios=[1.0,0.0,0.0]")
    assert result.returncode != 0 and "data.split_ratios" in result.stderr and "Traceback" not in result.stderr
