"""`llmrec tune` and `llmrec run --seeds N` as a user runs them: child runs, resume, aggregates."""

import json
import subprocess
import textwrap

import numpy as np
import pytest

from tests.cli.test_run_end_to_end import write_clustered_log

from tfrs_llmrec.config import load_experiment


def write_config(tmp_path, space, monitor="recall@20"):
    data = tmp_path / "log.csv"
    if not data.exists():
        write_clustered_log(data)
    config = tmp_path / "configs" / "mf.yaml"
    config.parent.mkdir(exist_ok=True)
    config.write_text(textwrap.dedent(f"""
        name: mf
        seed: 7
        output_dir: {tmp_path / 'runs'}
        data: {{dataset: csv, path: {data}, k_core: 2, num_shards: 2, max_history: 8}}
        model: {{name: mf_bpr, tower: {{dim: 8}}}}
        train: {{epochs: 3, batch_size: 64, learning_rate: 0.01, early_stopping_patience: 3, monitor: {monitor}}}
        eval: {{ks: [5, 20], split: test, baselines: []}}
        export: {{enabled: false}}
        tune: {{trials: 3, seed: 1, space: {space}}}
    """), encoding="utf-8")
    return config


SPACE = "[{key: train.learning_rate, values: [0.003, 0.03]}, {key: model.l2_weight, values: [0.0, 0.001]}]"


def run_llmrec(llmrec_cmd, env, *args):
    return subprocess.run(llmrec_cmd + list(args), capture_output=True, text=True, env=env, timeout=900)


def test_tune_selects_on_validation_writes_the_best_config_and_resumes(tmp_path, llmrec_cmd, subprocess_env):
    config = write_config(tmp_path, SPACE, monitor="ndcg@20")
    output = tmp_path / "configs" / "tuned" / "mf.yaml"
    result = run_llmrec(llmrec_cmd, subprocess_env, "tune", str(config), "--output", str(output))
    assert result.returncode == 0, result.stderr[-3000:]
    search = json.loads((tmp_path / "runs" / "mf-tune" / "trials.json").read_text())
    assert len(search["trials"]) == 3
    assert len({tuple(trial["values"].values()) for trial in search["trials"]}) == 3
    values = []
    for trial in search["trials"]:
        metrics = json.loads((tmp_path / "runs" / "mf-tune" / f"trial-{trial['trial']:02d}" / "metrics.json").read_text())
        assert metrics["split"] == "valid"  # eval.split: test in the config is not what a trial reads
        full_validation = metrics["models"]["mf_bpr"]["summary"]["overall"]
        assert trial["metric"] == "ndcg@20" and trial["value"] == full_validation["ndcg@20"]
        # Early stopping followed NDCG@20 on every validation user: its best value is the restored model's.
        train = json.loads((tmp_path / "runs" / "mf-tune" / f"trial-{trial['trial']:02d}" / "train_result.json").read_text())
        assert train["best_value"] == pytest.approx(full_validation["ndcg@20"], abs=1e-6)
        assert train["history"]["val_ndcg@20"][train["best_epoch"] - 1] == train["best_value"]
        values.append(trial["value"])
    assert search["best"]["value"] == max(values)
    tuned = load_experiment(output)
    assert tuned.name == "mf-tuned" and tuned.eval.split == "test"
    assert {"train.learning_rate": tuned.train.learning_rate, "model.l2_weight": tuned.model.l2_weight} == \
        search["best"]["values"]

    first = tmp_path / "runs" / "mf-tune" / "trial-00" / "metrics.json"
    stamp = first.stat().st_mtime_ns
    again = run_llmrec(llmrec_cmd, subprocess_env, "tune", str(config), "--output", str(output))
    assert again.returncode == 0, again.stderr[-3000:]
    assert first.stat().st_mtime_ns == stamp  # finished trials are kept, not retrained
    assert json.loads((tmp_path / "runs" / "mf-tune" / "trials.json").read_text())["best"] == search["best"]


def test_a_bad_space_is_one_error_before_any_trial(tmp_path, llmrec_cmd, subprocess_env):
    config = write_config(tmp_path, "[{key: model.l2_wieght, values: [0.1]}]")
    result = run_llmrec(llmrec_cmd, subprocess_env, "tune", str(config))
    assert result.returncode == 2
    assert "model.l2_wieght" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs" / "mf-tune").exists()


def test_seeds_run_separately_and_aggregate_into_one_metrics_file(tmp_path, llmrec_cmd, subprocess_env):
    config = write_config(tmp_path, SPACE)
    result = run_llmrec(llmrec_cmd, subprocess_env, "run", str(config), "--seeds", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = tmp_path / "runs"
    per_seed = [json.loads((runs / f"mf-seed{seed}" / "metrics.json").read_text()) for seed in (7, 8)]
    assert [load_experiment(runs / f"mf-seed{seed}" / "config.yaml").seed for seed in (7, 8)] == [7, 8]
    assert per_seed[0]["dataset"] == per_seed[1]["dataset"]  # one prepared dataset for every seed
    losses = [json.loads((runs / f"mf-seed{seed}" / "train_result.json").read_text())["history"]["loss"]
              for seed in (7, 8)]
    assert losses[0] != losses[1]  # the seed changes the initialisation and the sampled negatives

    aggregate = json.loads((runs / "mf-2seeds" / "metrics.json").read_text())
    assert aggregate["split"] == "test" and aggregate["seeds"] == [7, 8]
    for metric in ("recall@20", "ndcg@20", "recall@5"):
        values = [run["models"]["mf_bpr"]["summary"]["overall"][metric] for run in per_seed]
        model = aggregate["models"]["mf_bpr"]
        assert model["summary"]["overall"][metric] == pytest.approx(np.mean(values))
        assert model["std"]["overall"][metric] == pytest.approx(np.std(values, ddof=1))
    assert "±" in result.stdout


def test_an_explicit_single_seed_is_a_seed_run_kept_when_finished(tmp_path, llmrec_cmd, subprocess_env):
    # `make parity` reuses our runs through `--seeds 1`: it must name the run <name>-seed<S>,
    # keep it when rerun, and still write the aggregate.
    config = write_config(tmp_path, SPACE)
    result = run_llmrec(llmrec_cmd, subprocess_env, "run", str(config), "--seeds", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = tmp_path / "runs"
    metrics = runs / "mf-seed7" / "metrics.json"
    assert not (runs / "mf").exists()
    aggregate = json.loads((runs / "mf-1seeds" / "metrics.json").read_text())
    assert aggregate["seeds"] == [7]
    assert aggregate["models"]["mf_bpr"]["summary"] == json.loads(metrics.read_text())["models"]["mf_bpr"]["summary"]
    assert aggregate["models"]["mf_bpr"]["std"]["overall"]["recall@20"] == 0.0

    stamp = metrics.stat().st_mtime_ns
    again = run_llmrec(llmrec_cmd, subprocess_env, "run", str(config), "--seeds", "1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert metrics.stat().st_mtime_ns == stamp
