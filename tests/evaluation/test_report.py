import json
import os

import numpy as np
import pytest

from tfrs_llmrec import atomic_files
from tfrs_llmrec.evaluation.report import write_html_report, write_metrics_json

SUMMARY = {
    "overall": {"recall@20": 0.1234, "ndcg@20": 0.0567, "mrr": 0.0421, "num_users": 943, "num_targets": 943},
    "head_items": {"recall@20": 0.2345, "ndcg@20": 0.1111, "mrr": 0.0888, "num_users": 700, "num_targets": 700},
    "tail_items": {"recall@20": 0.0123, "ndcg@20": 0.0045, "mrr": 0.0033, "num_users": 243, "num_targets": 243},
    "bucket_metric": "recall@20",
    "by_popularity_bucket": [
        {"bucket": b, "num_items": 168, "min_popularity": 10 * b, "max_popularity": 10 * b + 9,
         "num_users": 50, "num_targets": 50, "recall@20": (None if b == 0 else 0.05 * b)}
        for b in range(10)],
}


def _runs():
    return [
        {"model": "two_tower", "summary": SUMMARY, "config": {"model": {"tower": {"dim": 64}}},
         "timings": {"train": 12.5, "evaluate": 1.25},
         "history": {"loss": [3.2, 2.9, 2.7], "val_recall@20": [0.08, 0.11, 0.1234]}},
        {"model": "pop", "summary": {"overall": {"recall@20": 0.0456, "mrr": 0.0101, "num_users": 943}},
         "config": {}, "timings": {"evaluate": 0.5}, "history": {}},
    ]


def test_metrics_json_round_trips(tmp_path):
    payload = {"model": "two_tower", "summary": SUMMARY, "seconds": 1.5}
    path = write_metrics_json(tmp_path / "run" / "metrics.json", payload)
    assert json.loads(path.read_text(encoding="utf-8")) == payload
    assert os.listdir(path.parent) == ["metrics.json"]


def test_metrics_json_converts_numpy_values_and_nan(tmp_path):
    payload = {"ranks": np.array([1, 3]), "recall": np.float32(0.5), "count": np.int64(7), "undefined": float("nan")}
    path = write_metrics_json(tmp_path / "metrics.json", payload)
    assert json.loads(path.read_text(encoding="utf-8")) == {"ranks": [1, 3], "recall": 0.5, "count": 7,
                                                            "undefined": None}


def test_metrics_json_failure_leaves_no_partial_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_metrics_json(path, {"version": 1})
    # json.dump has written part of the payload when it reaches the unserialisable object.
    with pytest.raises(TypeError):
        write_metrics_json(path, {"version": 2, "summary": SUMMARY, "bad": object()})
    assert os.listdir(tmp_path) == ["metrics.json"]
    assert json.loads(path.read_text(encoding="utf-8")) == {"version": 1}


def test_html_report_holds_tables_and_inline_plots(tmp_path):
    dataset_stats = {"num_users": 943, "num_items": 1682, "sparsity": 0.9369}
    path = write_html_report(tmp_path / "report.html", "ML-100K <demo>", _runs(), dataset_stats)
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "ML-100K &lt;demo&gt;" in page
    for value in ("0.1234", "0.0567", "0.2345", "0.0123", "0.0456", "943", "1682", "0.9369", "12.50"):
        assert value in page
    for group in ("overall", "head_items", "tail_items"):
        assert f'<td class="name">{group}</td>' in page
    # One popularity plot and one training-curve plot (pop has no history).
    assert page.count('<img alt="') == 2
    assert '<img alt="recall by item popularity bucket" src="data:image/png;base64,' in page
    assert '<img alt="training curves of two_tower" src="data:image/png;base64,' in page
    assert "&quot;dim&quot;: 64" in page
    assert os.listdir(tmp_path) == ["report.html"]


def test_html_report_without_plots(tmp_path):
    runs = [{"model": "pop", "summary": {"overall": {"recall@20": 0.25}}, "config": {}, "timings": {}, "history": {}}]
    page = write_html_report(tmp_path / "report.html", "t", runs, {}).read_text(encoding="utf-8")
    assert "0.2500" in page and "<img" not in page
    assert "No popularity buckets." in page and "No training history." in page


def test_html_report_failure_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "report.html"
    path.write_text("previous", encoding="utf-8")

    def failing_replace(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(atomic_files.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_html_report(path, "t", _runs(), {})
    assert os.listdir(tmp_path) == ["report.html"]
    assert path.read_text(encoding="utf-8") == "previous"
