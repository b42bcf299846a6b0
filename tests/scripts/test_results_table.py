"""scripts/results_table.py: a retrieval run's row, its split, and one error for runs without metrics."""

import json
from pathlib import Path

from tests.scripts import load_script

results_table = load_script("scripts/results_table.py", "results_table")


def _retrieval_run(run_dir: Path, dataset_dir: Path, split: str, recall: float) -> Path:
    summary = {group: {"recall@20": recall, "ndcg@20": recall / 2, "recall@50": recall * 2}
               for group in ("overall", "head_items", "tail_items")}
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps({
        "experiment": run_dir.name, "split": split, "dataset": str(dataset_dir),
        "models": {"mf_bpr": {"summary": summary, "seconds": 1.0}}}), encoding="utf-8")
    (run_dir / "train_result.json").write_text(json.dumps({
        "model": "mf_bpr", "best_epoch": 7, "seconds": 12.4}), encoding="utf-8")
    return run_dir


def _dataset(tmp_path: Path) -> Path:
    dataset_dir = tmp_path / "dataset"
    dataset_dir.mkdir()
    (dataset_dir / "stats.json").write_text(json.dumps({"dataset": "tiny"}), encoding="utf-8")
    return dataset_dir


def test_a_single_run_row_names_its_split(tmp_path, capsys):
    run = _retrieval_run(tmp_path / "bpr", _dataset(tmp_path), "test", 0.2)

    assert results_table.main([str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Split: test.")
    assert "| tiny | mf_bpr (`bpr`) | 1 | 0.2000 | 0.2000 | 0.2000 | 0.1000 | 0.1000 | 0.4000 | 7 | 12 s |" in out


def test_runs_of_two_splits_are_refused(tmp_path, capsys):
    dataset_dir = _dataset(tmp_path)
    runs = [_retrieval_run(tmp_path / "a", dataset_dir, "test", 0.2),
            _retrieval_run(tmp_path / "b", dataset_dir, "validation", 0.2)]

    assert results_table.main([str(run) for run in runs]) == 2
    assert "different splits (test, validation)" in capsys.readouterr().err


def test_a_run_without_metrics_is_one_error_naming_it_and_no_table(tmp_path, capsys):
    finished = _retrieval_run(tmp_path / "finished", _dataset(tmp_path), "test", 0.2)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()

    assert results_table.main([str(finished), str(unfinished)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == f"results_table: no metrics.json in {unfinished}"
