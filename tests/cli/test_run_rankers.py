"""`llmrec run` with the CTR rankers on a tiny implicit log: CTR samples, training through the
shared core, AUC/GAUC by group, gate reports, the scoring export and the retrieval-then-ranking
cascade behind a two-tower run."""

import numpy as np
import pytest
import tensorflow as tf

from tests.cli.test_run_end_to_end import write_clustered_log, write_config
from tests.cli.test_run_semantic_models import read, run_llmrec
from tfrs_llmrec.training import best_checkpoint

RANKER = ["--set", "train.epochs=2", "--set", "train.monitor=gauc", "--set", "ctr.max_history=6",
          "--set", "model.ranking.embedding_dim=8", "--set", "model.ranking.mlp_units=[32,16]",
          "--set", "model.ranking.attention_units=[16]"]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("rankers")
    data = tmp_path / "log.csv"
    write_clustered_log(data)
    return tmp_path, write_config(tmp_path, data)


def test_din_trains_on_ctr_samples_and_exports_a_scoring_model(experiment, llmrec_cmd, subprocess_env):
    tmp_path, config = experiment
    result = run_llmrec(llmrec_cmd, subprocess_env, "run", str(config), "--set", "name=din",
                        "--set", "model.name=din", *RANKER)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "din"
    assert list(read(run_dir / "train_result.json")["history"]) == ["loss", "val_gauc"]
    metrics = read(run_dir / "metrics.json")
    assert metrics["task"] == "ctr"
    summary = metrics["models"]["din"]["summary"]
    assert set(summary) == {"overall", "head_items", "tail_items", "active_users", "inactive_users"}
    assert 0.0 <= summary["overall"]["auc"] <= 1.0 and summary["overall"]["num_examples"] > 0
    ranking = read(run_dir / "export" / "export.json")["models"]["ranking"]
    assert ranking["max_abs_diff_vs_samples"] < 1e-5 and ranking["unknown_candidate_max_abs_diff"] < 1e-5


def test_akt_rec_reports_its_gates_and_reorders_a_retrievers_candidates(experiment, llmrec_cmd, subprocess_env):
    tmp_path, config = experiment
    retriever = run_llmrec(llmrec_cmd, subprocess_env, "run", str(config), "--set", "name=retriever",
                           "--set", "export.enabled=false")
    assert retriever.returncode == 0, retriever.stderr[-3000:]
    result = run_llmrec(llmrec_cmd, subprocess_env, "run", str(config), "--set", "name=akt",
                        "--set", "model.name=akt_rec", *RANKER, "--set", "export.enabled=false",
                        "--set", f"cascade.retriever_run={tmp_path / 'runs' / 'retriever'}",
                        "--set", "cascade.top_k=20", "--set", "cascade.ks=[5,10]")
    assert result.returncode == 0, result.stderr[-3000:]
    akt = read(tmp_path / "runs" / "akt" / "metrics.json")["models"]["akt_rec"]
    for gate in ("item_gate", "user_gate", "view_alpha"):
        buckets = [bucket[f"mean_{gate}"] for bucket in akt[f"{gate}_by_popularity_bucket"]
                   if bucket[f"mean_{gate}"] is not None]
        assert buckets and all(0.0 < value < 1.0 for value in buckets), gate
    cascade = akt["cascade"]
    assert cascade["retriever"] == "two_tower" and cascade["top_k"] == 20
    # The same candidates in another order: the recall of the whole list cannot change.
    assert cascade["retrieval"]["recall@20"] == cascade["reranked"]["recall@20"]
    retrieval = read(tmp_path / "runs" / "retriever" / "metrics.json")["models"]["two_tower"]["summary"]["overall"]
    assert cascade["retrieval"]["recall@20"] == pytest.approx(retrieval["recall@20"], abs=1e-9)
    assert set(cascade["reranked"]) == {"recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20", "ndcg@20"}


def test_a_cascade_on_a_ranker_run_is_one_clear_error(experiment, llmrec_cmd, subprocess_env):
    tmp_path, config = experiment
    source = tmp_path / "runs" / "din"
    if not (source / "config.yaml").is_file():
        pytest.fail("needs the DIN run of test_din_trains_on_ctr_samples_and_exports_a_scoring_model")
    result = run_llmrec(llmrec_cmd, subprocess_env, "evaluate", str(config), "--set", "name=din",
                        "--set", "model.name=din", *RANKER, "--set", f"cascade.retriever_run={source}")
    assert result.returncode == 1
    assert "cascade.retriever_run" in result.stderr and "a ranker, not a retriever" in result.stderr


def _best_weights(run_dir):
    reader = tf.train.load_checkpoint(best_checkpoint(run_dir / "checkpoints" / "1-train"))
    # The object graph is metadata; every other entry is a variable (model and optimizer).
    return {name: np.asarray(reader.get_tensor(name)) for name in reader.get_variable_to_shape_map()
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def test_akt_rec_twin_runs_in_separate_processes_train_the_same_bits(experiment, llmrec_cmd, subprocess_env):
    # Same config, same bits, across processes: shuffled data, unknown-ID draws, dropout, the transfer
    # loss and both attention views. (Grappler's cross-process drift, which set_global_determinism
    # turns off, showed at ML-100K's size; at this size the twins matched with Grappler on too.)
    tmp_path, config = experiment
    for name in ("akt-twin-a", "akt-twin-b"):
        result = run_llmrec(llmrec_cmd, subprocess_env, "run", str(config), "--set", f"name={name}",
                            "--set", "model.name=akt_rec", *RANKER, "--set", "export.enabled=false")
        assert result.returncode == 0, result.stderr[-3000:]
    first, second = (_best_weights(tmp_path / "runs" / name) for name in ("akt-twin-a", "akt-twin-b"))
    assert sorted(first) == sorted(second)
    differing = [name for name in first if first[name].tobytes() != second[name].tobytes()]
    assert not differing, differing[:5]
    assert read(tmp_path / "runs" / "akt-twin-a" / "train_result.json")["history"] == \
        read(tmp_path / "runs" / "akt-twin-b" / "train_result.json")["history"]
