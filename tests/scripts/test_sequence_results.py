"""scripts/sequence_results.py --table-only: rows from each run's metrics.json, nan for a run that
does not exist, and one table per split."""

import json
import math
from pathlib import Path

import pytest

from tests.scripts import REPO_ROOT, load_script

sequence_results = load_script("scripts/sequence_results.py", "sequence_results")
BASE = REPO_ROOT / "configs" / "ml100k_sequence.yaml"


def _summary(recall20: float) -> dict:
    overall = {"recall@20": recall20, "ndcg@20": 0.125, "hr@20": 0.5, "recall@50": 0.75, "ndcg@50": 0.25,
               "hr@50": 0.875}
    return {"overall": overall, "head_items": {"recall@20": 0.375}, "tail_items": {"recall@20": 0.0625}}


def _write_run(runs_dir: Path, name: str, split: str, models: dict) -> None:
    run_dir = runs_dir / name
    run_dir.mkdir(parents=True)
    payload = {"experiment": name, "split": split,
               "models": {model: {"summary": _summary(recall)} for model, recall in models.items()}}
    (run_dir / "metrics.json").write_text(json.dumps(payload), encoding="utf-8")


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    # The configs' output_dir is the relative `runs`.
    monkeypatch.chdir(tmp_path)
    return tmp_path / "runs"


def _table_rows(out: str) -> dict:
    rows = {}
    for line in out.splitlines():
        if line.startswith("| ") and not line.startswith("| run "):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0]] = [float(cell) for cell in cells[1:]]
    return rows


def test_the_table_has_pop_from_the_first_run_the_model_rows_and_nan_for_missing_runs(runs_dir, capsys):
    _write_run(runs_dir, "ml100k-sequence-two-tower", "test", {"pop": 0.0312, "two_tower": 0.2})
    _write_run(runs_dir, "ml100k-sasrec", "test", {"pop": 0.0312, "sasrec": 0.3})

    assert sequence_results.main([str(BASE), "--table-only"]) == 0
    out = capsys.readouterr().out
    assert "\nleave_one_out protocol, test split\n" in out
    rows = _table_rows(out)
    assert rows["pop"] == [0.0312, 0.125, 0.5, 0.75, 0.25, 0.875, 0.375, 0.0625]
    assert rows["ml100k-sequence-two-tower"][0] == 0.2
    assert rows["ml100k-sasrec"] == [0.3, 0.125, 0.5, 0.75, 0.25, 0.875, 0.375, 0.0625]
    assert all(math.isnan(value) for value in rows["ml100k-mind"])
    assert list(rows) == ["pop", "ml100k-sequence-two-tower", "ml100k-sasrec", "ml100k-mind", "ml100k-comirec-sa",
                          "ml100k-remi", "ml100k-eimf-mind", "ml100k-eimf-comirec-sa", "ml100k-eimf-remi"]


def test_runs_of_two_splits_in_one_table_are_refused(runs_dir, capsys):
    _write_run(runs_dir, "ml100k-sequence-two-tower", "test", {"pop": 0.03, "two_tower": 0.2})
    _write_run(runs_dir, "ml100k-sasrec", "validation", {"pop": 0.03, "sasrec": 0.3})

    assert sequence_results.main([str(BASE), "--table-only"]) == 2
    captured = capsys.readouterr()
    assert "leave_one_out protocol's runs report different splits (test, validation)" in captured.err
    assert "| ml100k-sasrec |" not in captured.out
