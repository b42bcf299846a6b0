"""scripts/motir_table.py: the variants and gate rows of a MotiR seed aggregate, by hand."""

import json
from pathlib import Path

from tests.scripts import load_script
from tfrs_llmrec.workflow.seeds import aggregate_runs, load_run_metrics, write_aggregate

motir_table = load_script("scripts/motir_table.py", "motir_table")


def _motir_run(run_dir: Path, recall: float, cosines, hit_rate: float, weights) -> Path:
    summary = {group: {"recall@20": recall} for group in ("overall", "head_items", "tail_items")}
    buckets = [{"bucket": index, "mean_semantic_weight": weight} for index, weight in enumerate(weights)]
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps({
        "experiment": run_dir.name, "split": "test", "dataset": "unused",
        "models": {"motir": {"summary": summary, "seconds": 1.0, "semantic_weight_by_popularity_bucket": buckets}}}),
        encoding="utf-8")
    align = {"epochs_completed": len(cosines),
             "history": {"val_mean_cosine": cosines, "val_semantic_only_hr@20": [0.0] * (len(cosines) - 1) + [hit_rate]}}
    (run_dir / "train_result.json").write_text(json.dumps({
        "model": "motir", "best_epoch": 3, "epochs_completed": 5, "seconds": 10.0, "stages": {"align": align}}),
        encoding="utf-8")
    return run_dir


def test_rows_of_an_aggregate(tmp_path):
    runs = [_motir_run(tmp_path / "m-seed42", 0.20, [0.5, 0.61], 0.10, [0.3, 0.2, 0.1]),
            _motir_run(tmp_path / "m-seed43", 0.22, [0.6], 0.20, [0.4, 0.3, 0.2]),
            _motir_run(tmp_path / "m-seed44", 0.24, [0.4, 0.5, 0.7], 0.30, [0.2, 0.2, 0.2])]
    out_dir = tmp_path / "m-3seeds"
    write_aggregate(aggregate_runs(runs, [42, 43, 44], out_dir.name), out_dir)
    variant, gate = motir_table.rows(out_dir, load_run_metrics([out_dir])[0])
    # Each seed's last alignment epoch; the last HR@20 (0.1, 0.2, 0.3: mean 0.2); recall mean 0.22, std 0.02.
    assert variant == ("| `m-3seeds` | 2 (0.610), 1 (0.600), 3 (0.700) | 0.200 | "
                       "0.2200 ± 0.0200 / 0.2200 ± 0.0200 / 0.2200 ± 0.0200 |")
    # Bucket means (0.3, 0.2333, 0.1667); bucket 0 − bucket 2 per seed: 0.2, 0.2, 0.0 (mean 0.1333, std 0.1155).
    assert gate == "| `m-3seeds` | 0.300 0.233 0.167 | +0.133 ± 0.115 |"


def test_a_missing_aggregate_is_one_error_naming_it_and_no_table(tmp_path, capsys):
    run = _motir_run(tmp_path / "m-seed42", 0.20, [0.5], 0.10, [0.3, 0.2])
    out_dir = tmp_path / "m-1seeds"
    write_aggregate(aggregate_runs([run], [42], out_dir.name), out_dir)
    missing = tmp_path / "m-3seeds"

    assert motir_table.main([str(out_dir), str(missing)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == f"motir_table: no metrics.json in {missing}"
