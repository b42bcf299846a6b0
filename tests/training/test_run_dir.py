"""The run directory's file names and its reader of the training summary."""

import json

from tfrs_llmrec.training.run_dir import TRAIN_RESULT_FILE, read_train_result


def test_read_train_result_returns_the_written_summary(tmp_path):
    summary = {"model": "two_tower", "best_epoch": 3, "seconds": 12.5, "history": {"loss": [0.9, 0.7, 0.6]}}
    (tmp_path / TRAIN_RESULT_FILE).write_text(json.dumps(summary), encoding="utf-8")
    assert read_train_result(tmp_path) == summary


def test_read_train_result_is_empty_for_a_run_not_trained_here(tmp_path):
    (tmp_path / "metrics.json").write_text("{}", encoding="utf-8")
    assert read_train_result(tmp_path) == {}
    assert read_train_result(str(tmp_path)) == {}
