"""scripts/ctr_results_table.py: a row per single run or seed aggregate, with the aggregate's spread."""

import json
from pathlib import Path

from tests.scripts import load_script
from tfrs_llmrec.workflow.seeds import aggregate_runs, load_run_metrics, write_aggregate

ctr_results_table = load_script("scripts/ctr_results_table.py", "ctr_results_table")


def load(run_dir: Path) -> dict:
    return load_run_metrics([run_dir])[0]


def _ranker_run(run_dir: Path, gauc: float, best_epoch: int, epochs: int, seconds: float) -> Path:
    groups = {group: {"auc": gauc + 0.1, "gauc": gauc, "logloss": 0.5}
              for group in ("overall", "head_items", "tail_items")}
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps({
        "experiment": run_dir.name, "split": "test", "dataset": "unused",
        "models": {"din": {"summary": groups, "seconds": 1.0}}}), encoding="utf-8")
    (run_dir / "train_result.json").write_text(json.dumps({
        "model": "din", "best_epoch": best_epoch, "epochs_completed": epochs, "seconds": seconds}), encoding="utf-8")
    return run_dir


def test_a_single_run_row(tmp_path):
    run = _ranker_run(tmp_path / "din", 0.7, 9, 10, 50.0)
    assert ctr_results_table.row(run, load(run)) == ("| din | din | 1 | 0.8000 / 0.8000 / 0.8000 | "
                                                     "0.7000 / 0.7000 / 0.7000 | "
                                                     "0.5000 | 9/10 | 5.0 s |")


def test_an_aggregate_row_has_mean_and_sample_std_and_every_seeds_epochs(tmp_path):
    runs = [_ranker_run(tmp_path / "din-seed42", 0.70, 6, 11, 11.0),
            _ranker_run(tmp_path / "din-seed43", 0.72, 8, 13, 52.0),
            _ranker_run(tmp_path / "din-seed44", 0.74, 4, 9, 27.0)]
    out_dir = tmp_path / "din-3seeds"
    write_aggregate(aggregate_runs(runs, [42, 43, 44], out_dir.name), out_dir)
    row = ctr_results_table.row(out_dir, load(out_dir))
    # By hand: mean 0.72; deviations ±0.02 and 0 give a sample variance (0.0004 * 2) / 2, std 0.02.
    assert "| din-3seeds | din | 3 | 0.8200 ± 0.0200 / " in row
    assert "0.7200 ± 0.0200 / 0.7200 ± 0.0200 / 0.7200 ± 0.0200" in row
    assert "| 0.5000 ± 0.0000 |" in row
    # 11 + 52 + 27 = 90 seconds over 11 + 13 + 9 = 33 epochs.
    assert row.endswith("| 6/11, 8/13, 4/9 | 2.7 s |")


def test_an_aggregate_with_gates_gets_a_row_per_gate_over_its_seeds(tmp_path):
    runs = []
    for seed, (low, high) in zip((42, 43), ((0.30, 0.50), (0.40, 0.50))):
        run = _ranker_run(tmp_path / f"akt-seed{seed}", 0.7, 3, 5, 10.0)
        metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        metrics["models"]["din"]["item_gate_by_popularity_bucket"] = [
            {"bucket": 0, "mean_item_gate": low}, {"bucket": 1, "mean_item_gate": high}]
        (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
        runs.append(run)
    out_dir = tmp_path / "akt-2seeds"
    write_aggregate(aggregate_runs(runs, [42, 43], out_dir.name), out_dir)
    # By hand: bucket means 0.35 and 0.50; bucket 0 - bucket 1 is -0.2 and -0.1 per seed, mean -0.15,
    # sample std sqrt((0.05² + 0.05²) / 1) = 0.0707.
    assert ctr_results_table.gate_rows(load(out_dir)) == ["| akt-2seeds | item_gate | 0.350 0.500 | -0.150 ± 0.071 |"]
    assert ctr_results_table.gate_rows(load(runs[0])) == []


def _add_cascade(run: Path, retrieval: float, reranked: float) -> None:
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    orders = {order: {"recall@10": value, "ndcg@10": value / 2, "recall@20": value * 2, "ndcg@20": value,
                      "recall@100": 0.5} for order, value in (("retrieval", retrieval), ("reranked", reranked))}
    metrics["models"]["din"]["cascade"] = {"retriever_run": f"runs/motir-{run.name}", "retriever": "motir",
                                           "top_k": 100, "split": "test", "num_users": 943, **orders}
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")


def test_a_cascade_row_per_run_and_over_seeds(tmp_path):
    runs = [_ranker_run(tmp_path / f"akt-seed{seed}", 0.7, 3, 5, 10.0) for seed in (42, 43)]
    metrics = ["recall@10", "ndcg@10", "recall@20", "ndcg@20"]
    assert ctr_results_table.cascade_row(load(runs[0]), metrics) is None
    _add_cascade(runs[0], 0.10, 0.04)
    _add_cascade(runs[1], 0.12, 0.06)
    assert ctr_results_table.cascade_metrics(load(runs[0])) == metrics  # recall@100 is the candidates' column
    assert ctr_results_table.cascade_row(load(runs[0]), metrics) == (
        "| akt-seed42 | runs/motir-akt-seed42 | 943 | 0.5000 | 0.1000 → 0.0400 | 0.0500 → 0.0200 | "
        "0.2000 → 0.0800 | 0.1000 → 0.0400 |")
    out_dir = tmp_path / "akt-cascade-2seeds"
    write_aggregate(aggregate_runs(runs, [42, 43], out_dir.name), out_dir)
    # By hand: recall@10 0.10 and 0.12 give mean 0.11, sample std sqrt(2 * 0.01²) = 0.0141; the retriever
    # runs differ per seed, so the row names the retriever model.
    row = ctr_results_table.cascade_row(load(out_dir), ["recall@10", "recall@5"])
    assert row.endswith(" | - |")  # a cutoff this run did not report
    assert row.startswith("| akt-cascade-2seeds | motir (one run per seed) | 943 | 0.5000 ± 0.0000 | "
                          "0.1100 ± 0.0141 → 0.0500 ± 0.0141 | ")


def test_a_run_without_metrics_is_one_error_naming_it_and_no_table(tmp_path, capsys):
    finished = _ranker_run(tmp_path / "finished", 0.70, 2, 4, 10.0)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()

    assert ctr_results_table.main([str(finished), str(unfinished)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == f"ctr_results_table: no metrics.json in {unfinished}"


def test_an_aggregate_whose_seed_run_lost_its_metrics_is_one_error_naming_the_seed_run(tmp_path, capsys):
    runs = [_ranker_run(tmp_path / f"din-seed{seed}", 0.70, 2, 4, 10.0) for seed in (42, 43)]
    out_dir = tmp_path / "din-2seeds"
    write_aggregate(aggregate_runs(runs, [42, 43], out_dir.name), out_dir)
    (runs[1] / "metrics.json").unlink()

    assert ctr_results_table.main([str(out_dir)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == f"ctr_results_table: no metrics.json in {runs[1]}"
