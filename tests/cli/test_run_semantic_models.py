"""`llmrec run` with MotiR and AlphaRec: stages, gate report, exports and zero-shot, on a tiny log."""

import json
import subprocess

import numpy as np
import pytest

from tests.cli.test_run_end_to_end import write_clustered_log, write_config

FEW_EPOCHS = ["--set", "train.epochs=2", "--set", "model.motir.stage1.epochs=2", "--set",
              "model.motir.stage2.epochs=2", "--set", "model.motir.stage3.epochs=2"]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    return experiment_with_item_texts(tmp_path_factory.mktemp("semantic"))


def experiment_with_item_texts(tmp_path, num_users=80):
    """The clustered log of `write_clustered_log`, an item file whose titles and genres follow the
    clusters, and a config reading both: (tmp_path, config path)."""
    data = tmp_path / "log.csv"
    write_clustered_log(data, num_users=num_users)
    items = tmp_path / "items.csv"
    themes = ["haunted castle horror", "kart racing", "farm life simulation", "space strategy"]
    items.write_text("item_id,title,genres\n" + "".join(
        f"i{item},{themes[item % 4].title()} {item},{themes[item % 4].split()[-1]}\n" for item in range(40)),
        encoding="utf-8")
    config = write_config(tmp_path, data)
    config.write_text(config.read_text().replace(
        "max_history: 8}", f"max_history: 8, columns: {{items_path: {items}, genres: genres}}}}"), encoding="utf-8")
    return tmp_path, config


def run_llmrec(llmrec_cmd, env, *args):
    return subprocess.run(llmrec_cmd + list(args), capture_output=True, text=True, env=env, timeout=900)


def read(path):
    return json.loads(path.read_text())


def test_motir_runs_three_stages_and_exports(experiment, llmrec_cmd, subprocess_env):
    tmp_path, config = experiment
    result = run_llmrec(llmrec_cmd, subprocess_env, "run", str(config), "--set", "name=motir",
                        "--set", "model.name=motir", *FEW_EPOCHS)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "motir"
    train = read(run_dir / "train_result.json")
    assert list(train["stages"]) == ["id", "align", "joint"]
    assert len(train["alignment"]["mean_cosine_per_epoch"]) == train["stages"]["align"]["epochs_completed"]
    assert "semantic_only_hr@5_per_epoch" in train["alignment"]
    for stage in ("1-id", "2-align", "3-joint"):
        assert (run_dir / "checkpoints" / stage / "best").is_dir(), stage

    buckets = read(run_dir / "metrics.json")["models"]["motir"]["semantic_weight_by_popularity_bucket"]
    weights = [bucket["mean_semantic_weight"] for bucket in buckets if bucket["num_items"]]
    assert weights and all(0.0 <= weight <= 1.0 for weight in weights)

    export = read(run_dir / "export" / "export.json")
    assert export["model"] == "motir" and export["models"]["brute_force"]["query_max_abs_diff"] < 1e-5
    assert export["models"]["brute_force"]["recall@10_vs_exact"] == 1.0
    check_item_towers(export, run_dir)


def check_item_towers(export, run_dir):
    """New items from their vectors, and from their texts through the encoder inside the graph,
    land where the in-memory model puts the features job's vectors of those texts."""
    items = export["models"]["item_tower"]
    assert items["max_abs_diff"] < 1e-6 and items["new_items_from_vector_max_abs_diff"] < 1e-5
    text = export["models"]["item_tower_text"]
    assert text["semantic_source"] == "metadata" and text["new_items_vs_features_job_max_abs_diff"] < 1e-4
    assert (run_dir / "export" / "item_tower_text" / "saved_model.pb").is_file()
    cold = items["catalogue_as_new_items"]
    assert set(cold) == {f"recall@{k}_{part}{label}" for k in (5, 20) for part in ("", "tail_")
                         for label in ("trained", "text_only")}
    assert all(0.0 <= value <= 1.0 for value in cold.values())


def test_alpharec_exports_intention_model_and_zero_shot_reuses_its_mlp(experiment, llmrec_cmd, subprocess_env):
    tmp_path, config = experiment
    result = run_llmrec(llmrec_cmd, subprocess_env, "run", str(config), "--set", "name=alpharec",
                        "--set", "model.name=alpharec", *FEW_EPOCHS)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "alpharec"
    export = read(run_dir / "export" / "export.json")
    assert export["models"]["brute_force"]["query_max_abs_diff"] < 1e-5
    assert export["models"]["brute_force"]["recall@10_vs_exact"] == 1.0
    assert export["intention"]["recall@10_vs_exact"] == 1.0
    check_item_towers(export, run_dir)
    assert (run_dir / "export" / "intention_brute_force" / "saved_model.pb").is_file()

    # Zero-shot from that run onto the same data: the borrowed MLP and the same graph give the same numbers.
    result = run_llmrec(llmrec_cmd, subprocess_env, "run", str(config), "--set", "name=zero-shot",
                        "--set", "model.name=alpharec", "--set", f"model.alpharec.zero_shot_from={run_dir}",
                        "--set", "export.enabled=false")
    assert result.returncode == 0, result.stderr[-3000:]
    zero_shot = read(tmp_path / "runs" / "zero-shot" / "metrics.json")["models"]["alpharec"]["summary"]["overall"]
    trained = read(run_dir / "metrics.json")["models"]["alpharec"]["summary"]["overall"]
    np.testing.assert_allclose(zero_shot["recall@20"], trained["recall@20"], rtol=1e-6)
    assert not (tmp_path / "runs" / "zero-shot" / "checkpoints").exists()


def test_zero_shot_from_a_run_of_another_model_is_one_clear_error(experiment, llmrec_cmd, subprocess_env):
    tmp_path, config = experiment
    source = tmp_path / "runs" / "motir"
    if not (source / "config.yaml").is_file():
        pytest.fail("needs the MotiR run of test_motir_runs_three_stages_and_exports")
    result = run_llmrec(llmrec_cmd, subprocess_env, "evaluate", str(config), "--set", "name=bad-zero-shot",
                        "--set", "model.name=alpharec", "--set", f"model.alpharec.zero_shot_from={source}")
    assert result.returncode == 1
    assert "model.alpharec.zero_shot_from" in result.stderr and "trained motir, not alpharec" in result.stderr
