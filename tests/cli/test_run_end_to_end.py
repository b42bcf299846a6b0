"""`llmrec run` as a user runs it: a real Beam job, training, evaluation, export and report."""

import json
import subprocess
import textwrap

import numpy as np
import pytest


def write_clustered_log(path, num_users=80, num_items=40, per_user=12, seed=0):
    """Users in cluster c interact mostly with items of cluster c: a pattern Pop cannot see."""
    rng = np.random.default_rng(seed)
    lines = ["user_id,item_id,timestamp"]
    for user in range(num_users):
        cluster = user % 4
        own = [item for item in range(num_items) if item % 4 == cluster]
        chosen = rng.choice(own, size=per_user - 2, replace=False).tolist() + rng.choice(num_items, 2).tolist()
        for position, item in enumerate(dict.fromkeys(chosen)):
            lines.append(f"u{user},i{item},{1000 + 10 * position + user}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_config(tmp_path, data_path):
    config = tmp_path / "exp.yaml"
    config.write_text(textwrap.dedent(f"""
        name: e2e
        seed: 7
        output_dir: {tmp_path / 'runs'}
        data: {{dataset: csv, path: {data_path}, k_core: 2, num_shards: 2, max_history: 8}}
        model: {{name: two_tower, tower: {{dim: 16}}, temperature: 0.1, num_sampled_negatives: 8}}
        train: {{epochs: 6, batch_size: 64, learning_rate: 0.01, early_stopping_patience: 6}}
        eval: {{ks: [5, 20]}}
        export: {{top_k: 10, scann_num_leaves: 4, scann_num_leaves_to_search: 4}}
        features: {{semantic_ids: {{num_levels: 2, codebook_size: 4, latent_dim: 8, hidden_dims: [16], epochs: 3}}}}
    """), encoding="utf-8")
    return config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("e2e")
    data = tmp_path / "log.csv"
    write_clustered_log(data)
    config = write_config(tmp_path, data)
    return tmp_path, config


def run_llmrec(llmrec_cmd, env, *args):
    return subprocess.run(llmrec_cmd + list(args), capture_output=True, text=True, env=env, timeout=600)


def test_run_produces_every_artefact(finished_run, llmrec_cmd, subprocess_env):
    tmp_path, config = finished_run
    result = run_llmrec(llmrec_cmd, subprocess_env, "run", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stages data, features, ctr, train, evaluate, export, report completed" in result.stdout
    run_dir = tmp_path / "runs" / "e2e"

    metrics = json.loads((run_dir / "metrics.json").read_text())
    two_tower = metrics["models"]["two_tower"]["summary"]
    pop = metrics["models"]["pop"]["summary"]
    assert two_tower["overall"]["num_users"] == 80
    assert two_tower["overall"]["recall@5"] > pop["overall"]["recall@5"]  # clusters are learnable
    for group in ("head_items", "tail_items", "active_users", "inactive_users"):
        assert group in two_tower

    export = json.loads((run_dir / "export" / "export.json").read_text())
    brute_force, scann = export["models"]["brute_force"], export["models"]["scann"]
    assert brute_force["query_max_abs_diff"] < 1e-5 and brute_force["score_max_abs_diff"] < 1e-4
    assert brute_force["recall@10_vs_exact"] == 1.0 and brute_force["core_ops_only"]
    assert brute_force["unknown_candidate_scores_lowest"]
    assert scann["recall@10_vs_exact"] >= 0.9  # every leaf searched
    assert export["models"]["item_tower"]["max_abs_diff"] < 1e-6
    assert (run_dir / "export" / "retrieval_scann" / "saved_model.pb").is_file()

    report = (run_dir / "report.html").read_text()
    assert "two_tower" in report and "data:image/png;base64," in report
    train = json.loads((run_dir / "train_result.json").read_text())
    assert len(train["history"]["loss"]) == train["epochs_completed"] > 0


def test_rerun_reuses_data_and_checkpoints(finished_run, llmrec_cmd, subprocess_env):
    tmp_path, config = finished_run
    run_dir = tmp_path / "runs" / "e2e"
    before = json.loads((run_dir / "metrics.json").read_text())
    result = run_llmrec(llmrec_cmd, subprocess_env, "run", str(config), "--set", "export.enabled=false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reusing the prepared dataset" in result.stderr
    assert "Epoch 1/" not in result.stdout + result.stderr  # training finished last time: nothing to redo
    after = json.loads((run_dir / "metrics.json").read_text())
    assert after["models"]["two_tower"]["summary"]["overall"] == before["models"]["two_tower"]["summary"]["overall"]


def test_malformed_row_is_one_clear_error(tmp_path, llmrec_cmd, subprocess_env):
    data = tmp_path / "bad.csv"
    data.write_text("user_id,item_id,timestamp\nu1,i1,10\nu1,i2\nu2,i1,12\n", encoding="utf-8")
    config = write_config(tmp_path, data)
    result = run_llmrec(llmrec_cmd, subprocess_env, "data", str(config))
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"llmrec data: {data}:3:")
    assert "Traceback" not in result.stderr
    datasets = tmp_path / "runs" / "datasets"
    leftovers = list(datasets.iterdir()) if datasets.exists() else []
    assert all(".partial-" in path.name for path in leftovers)  # nothing looks complete
