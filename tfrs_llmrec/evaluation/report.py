"""`metrics.json` and a self-contained HTML report comparing runs.

Both are written atomically: to a temporary file in the destination directory, then renamed
over the destination, so a reader (or a crashed job) never sees a half-written file.

A run, as `write_html_report` takes it, is a dict:

    {"model": "two_tower",                  # the model's name
     "summary": RetrievalEvaluation.summary,
     "config": {...},                       # shown as JSON
     "timings": {"train": 12.3, ...},       # seconds per stage
     "history": {"loss": [...], "val_recall@20": [...]}}  # per epoch, may be empty

Plots are PNGs embedded as base64 data URIs, drawn with matplotlib's Agg canvas on standalone
`Figure`s (no pyplot, so no global backend or figure state is touched).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tfrs_llmrec.atomic_files import json_ready, write_atomically, write_json_atomically

SUMMARY_GROUPS = ("overall", "head_items", "tail_items", "active_users", "inactive_users")
_COUNT_COLUMNS = ("num_users", "num_targets")


def write_metrics_json(path, payload) -> Path:
    """Writes `payload` as indented JSON; NumPy values become Python ones, NaN/inf become null."""
    return write_json_atomically(path, payload)


def write_html_report(path, title: str, runs: Sequence[dict], dataset_stats: dict) -> Path:
    """One HTML page: metric tables per model, dataset stats, popularity and training plots."""
    path = Path(path)
    page = _render_page(title, list(runs), dataset_stats or {})
    write_atomically(path, lambda handle: handle.write(page))
    return path


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; }
td.name, th.name { text-align: left; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; }
img { max-width: 100%; }
"""


def _render_page(title: str, runs: List[dict], dataset_stats: dict) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_text(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_text(title)}</h1>",
        "<h2>Metrics</h2>",
        _metrics_table(runs),
        "<h2>Dataset</h2>",
        _key_value_table(dataset_stats),
        "<h2>Recall by item popularity</h2>",
        _popularity_section(runs),
        "<h2>Training curves</h2>",
        _training_section(runs),
        "<h2>Timings (seconds)</h2>",
        _timings_table(runs),
        "<h2>Configurations</h2>",
    ]
    for run in runs:
        config = json.dumps(json_ready(run.get("config") or {}), indent=2, sort_keys=True, default=str)
        parts.append(f"<details><summary>{_text(_model_name(run))}</summary><pre>{_text(config)}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _model_name(run: dict) -> str:
    return str(run.get("model", "model"))


def _text(value) -> str:
    return html.escape(str(value))


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "&ndash;"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4f}"
    if isinstance(value, (dict, list, tuple)):
        return _text(json.dumps(json_ready(value), default=str))
    return _text(value)


def _seconds(value) -> str:
    if isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(float(value)):
        return f"{float(value):.2f}"
    return _cell(value)


def _metrics_table(runs: List[dict]) -> str:
    columns: List[str] = []
    for run in runs:
        for group in SUMMARY_GROUPS:
            for name in (run.get("summary") or {}).get(group, {}):
                if name not in columns and name not in _COUNT_COLUMNS:
                    columns.append(name)
    header = "".join(f"<th>{_text(name)}</th>" for name in (*_COUNT_COLUMNS, *columns))
    rows = []
    for run in runs:
        summary = run.get("summary") or {}
        for group in SUMMARY_GROUPS:
            if group not in summary:
                continue
            values = summary[group]
            cells = "".join(f"<td>{_cell(values.get(name))}</td>" for name in (*_COUNT_COLUMNS, *columns))
            rows.append(f'<tr><td class="name">{_text(_model_name(run))}</td>'
                        f'<td class="name">{_text(group)}</td>{cells}</tr>')
    if not rows:
        return "<p>No metrics.</p>"
    return (f'<table><tr><th class="name">model</th><th class="name">group</th>{header}</tr>'
            + "".join(rows) + "</table>")


def _key_value_table(values: dict) -> str:
    if not values:
        return "<p>No dataset statistics.</p>"
    rows = "".join(f'<tr><td class="name">{_text(key)}</td><td>{_cell(value)}</td></tr>'
                   for key, value in values.items())
    return f'<table><tr><th class="name">statistic</th><th>value</th></tr>{rows}</table>'


def _timings_table(runs: List[dict]) -> str:
    stages: List[str] = []
    for run in runs:
        for stage in run.get("timings") or {}:
            if stage not in stages:
                stages.append(stage)
    if not stages:
        return "<p>No timings.</p>"
    header = "".join(f"<th>{_text(stage)}</th>" for stage in stages)
    rows = "".join(
        f'<tr><td class="name">{_text(_model_name(run))}</td>'
        + "".join(f"<td>{_seconds((run.get('timings') or {}).get(stage))}</td>" for stage in stages) + "</tr>"
        for run in runs)
    return f'<table><tr><th class="name">model</th>{header}</tr>{rows}</table>'


def _popularity_section(runs: List[dict]) -> str:
    plotted = [run for run in runs if (run.get("summary") or {}).get("by_popularity_bucket")]
    if not plotted:
        return "<p>No popularity buckets.</p>"
    figure = _figure(7.5, 4.0)
    axes = figure.add_subplot()
    labels: List[str] = []
    metric_names = set()
    for run in plotted:
        summary = run["summary"]
        buckets = summary["by_popularity_bucket"]
        metric = summary.get("bucket_metric") or next(
            (key for key in buckets[0] if key.startswith("recall@")), None)
        metric_names.add(metric)
        values = [_float_or_nan(bucket.get(metric)) for bucket in buckets]
        axes.plot(range(1, len(buckets) + 1), values, marker="o", label=_model_name(run))
        if len(buckets) > len(labels):
            labels = [_bucket_label(bucket) for bucket in buckets]
    axes.set_xticks(range(1, len(labels) + 1))
    axes.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    axes.set_xlabel("item popularity bucket (training interactions, least popular first)")
    axes.set_ylabel(" / ".join(sorted(str(name) for name in metric_names)))
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return _image(figure, "recall by item popularity bucket")


def _training_section(runs: List[dict]) -> str:
    parts = []
    for run in runs:
        history: Dict[str, list] = {key: list(values) for key, values in (run.get("history") or {}).items()
                                    if values is not None and len(values) > 0}
        if not history:
            continue
        losses = {key: values for key, values in history.items() if "loss" in key}
        others = {key: values for key, values in history.items() if "loss" not in key}
        panels = [(name, series) for name, series in (("loss", losses), ("validation metric", others)) if series]
        figure = _figure(5.0 * len(panels), 3.5)
        for index, (ylabel, series) in enumerate(panels):
            axes = figure.add_subplot(1, len(panels), index + 1)
            for key, values in series.items():
                axes.plot(range(1, len(values) + 1), [_float_or_nan(v) for v in values], marker="o", label=key)
            axes.set_xlabel("epoch")
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
            axes.set_ylabel(ylabel)
            axes.grid(alpha=0.3)
            axes.legend()
        figure.suptitle(_model_name(run))
        figure.tight_layout()
        parts.append(f"<h3>{_text(_model_name(run))}</h3>" + _image(figure, f"training curves of {_model_name(run)}"))
    return "\n".join(parts) if parts else "<p>No training history.</p>"


def _bucket_label(bucket: dict) -> str:
    low, high = bucket.get("min_popularity"), bucket.get("max_popularity")
    if low is None or high is None:
        return "empty"
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


def _float_or_nan(value) -> float:
    return math.nan if value is None else float(value)


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _image(figure: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{_text(alt)}" src="data:image/png;base64,{encoded}">'
