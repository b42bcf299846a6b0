"""scripts/export_table.py: the export checks and cold-start rows of seed aggregates, by hand."""

import json
from pathlib import Path

from tests.scripts import load_script
from tfrs_llmrec.workflow.seeds import aggregate_runs, load_run_metrics, write_aggregate

export_table = load_script("scripts/export_table.py", "export_table")


def _exported_run(run_dir: Path, split: str, query_diff: float, brute_force: float, scann: float, leaves,
                  cold=None) -> Path:
    """A finished run with export/export.json; `cold` is (trained all, trained tail, text all, text tail)."""
    run_dir.mkdir(parents=True)
    summary = {group: {"recall@20": 0.1} for group in ("overall", "head_items", "tail_items")}
    (run_dir / "metrics.json").write_text(json.dumps({
        "experiment": run_dir.name, "split": split, "dataset": "unused",
        "models": {"motir": {"summary": summary, "seconds": 1.0}}}), encoding="utf-8")
    (run_dir / "train_result.json").write_text(json.dumps({
        "model": "motir", "best_epoch": 1, "epochs_completed": 2, "seconds": 1.0}), encoding="utf-8")
    item_tower = {"directory": "item_tower"}
    if cold is not None:
        item_tower["catalogue_as_new_items"] = {
            "recall@20_trained": cold[0], "recall@20_tail_trained": cold[1],
            "recall@20_text_only": cold[2], "recall@20_tail_text_only": cold[3]}
    (run_dir / "export").mkdir()
    (run_dir / "export" / "export.json").write_text(json.dumps({
        "k": 100, "config": {"eval": {"split": split}},
        "models": {"brute_force": {"recall@100_vs_exact": brute_force, "query_max_abs_diff": query_diff},
                   "scann": {"recall@100_vs_exact": scann, "num_leaves": leaves[1],
                             "num_leaves_to_search": leaves[0]},
                   "item_tower": item_tower}}), encoding="utf-8")
    return run_dir


def _aggregate(tmp_path: Path, name: str, runs) -> Path:
    out_dir = tmp_path / f"{name}-{len(runs)}seeds"
    write_aggregate(aggregate_runs(runs, [42 + index for index in range(len(runs))], out_dir.name), out_dir)
    return out_dir


def test_rows_of_an_aggregate(tmp_path):
    runs = [_exported_run(tmp_path / "m-seed42", "test", 0.0, 1.0, 0.99, (28, 37), (0.20, 0.10, 0.15, 0.12)),
            _exported_run(tmp_path / "m-seed43", "test", 2e-7, 1.0, 0.97, (28, 37), (0.22, 0.14, 0.17, 0.10)),
            _exported_run(tmp_path / "m-seed44", "test", 1e-7, 0.998, 0.98, (28, 37), (0.24, 0.12, 0.16, 0.14))]
    out_dir = _aggregate(tmp_path, "m", runs)
    exports = [json.loads((run / "export" / "export.json").read_text()) for run in runs]
    checks, cold = export_table.rows(out_dir, exports)
    # The worst seed of each check: the largest query difference, the lowest recall of each index.
    assert checks == "| `m-3seeds` | 2.0e-07 | 0.998 | 0.970 (28 of 37) |"
    # Trained: all (0.20, 0.22, 0.24) -> 0.22 ± 0.02, tail (0.10, 0.14, 0.12) -> 0.12 ± 0.02;
    # text only: all (0.15, 0.17, 0.16) -> 0.16 ± 0.01, tail (0.12, 0.10, 0.14) -> 0.12 ± 0.02.
    assert cold == "| `m-3seeds` | 0.2200 ± 0.0200 / 0.1200 ± 0.0200 | 0.1600 ± 0.0100 / 0.1200 ± 0.0200 |"


def test_a_model_without_a_semantic_item_tower_has_no_cold_start_row(tmp_path):
    run = _exported_run(tmp_path / "t-seed42", "test", 0.0, 1.0, 0.95, (20, 30))
    out_dir = _aggregate(tmp_path, "t", [run])
    checks, cold = export_table.rows(out_dir, [json.loads((run / "export" / "export.json").read_text())])
    assert checks == "| `t-1seeds` | 0.0e+00 | 1.000 | 0.950 (20 of 30) |"
    assert cold is None


def test_a_run_without_an_export_is_one_error_naming_it(tmp_path, capsys):
    exported = _exported_run(tmp_path / "a-seed42", "test", 0.0, 1.0, 0.95, (20, 30))
    bare = _exported_run(tmp_path / "b-seed42", "test", 0.0, 1.0, 0.95, (20, 30))
    (bare / "export" / "export.json").unlink()
    dirs = [_aggregate(tmp_path, "a", [exported]), _aggregate(tmp_path, "b", [bare])]

    assert export_table.main([str(path) for path in dirs]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == f"export_table: no export/export.json in {bare} (export.enabled false?)"


def test_runs_of_different_splits_are_refused(tmp_path, capsys):
    dirs = [_aggregate(tmp_path, "v", [_exported_run(tmp_path / "v-seed42", "valid", 0.0, 1.0, 0.9, (2, 3))]),
            _aggregate(tmp_path, "t", [_exported_run(tmp_path / "t-seed42", "test", 0.0, 1.0, 0.9, (2, 3))])]
    assert [load_run_metrics([path])[0]["split"] for path in dirs] == ["valid", "test"]

    assert export_table.main([str(path) for path in dirs]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "different splits (test, valid)" in captured.err


def test_intention_row_and_none_without_the_intention_export(tmp_path):
    exports = [{"intention": {"num_users": 942, "hr@20_history_only": history, "hr@20_with_target_title": title}}
               for history, title in ((0.10, 0.70), (0.14, 0.80), (0.12, 0.90))]
    # History only (0.10, 0.14, 0.12) -> 0.12 ± 0.02; with the title (0.7, 0.8, 0.9) -> 0.8 ± 0.1.
    assert (export_table.intention_row(tmp_path / "a-3seeds", exports)
            == "| `a-3seeds` | 942 | 0.1200 ± 0.0200 | 0.8000 ± 0.1000 |")
    skipped = exports[:2] + [{"intention": {"skipped": "encoder kind onnx has no in-graph module"}}]
    assert export_table.intention_row(tmp_path / "a-3seeds", skipped) is None
    assert export_table.intention_row(tmp_path / "t-1seeds", [{"models": {}}]) is None
