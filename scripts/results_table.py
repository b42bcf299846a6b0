"""Prints a results table from finished runs: python scripts/results_table.py runs/<name> ...

A run is either one `llmrec run` directory or the aggregate of `llmrec run --seeds N`
(`runs/<name>-<N>seeds`); an aggregate's cells are mean ± sample standard deviation over its
seeds. Each run contributes the row of the model it trained (labelled with the run's name) and its
baselines (labelled with the model's name, printed once per dataset). The table says which split
it reports and refuses runs of different splits.
"""

import json
import sys
from pathlib import Path

from tfrs_llmrec.training.run_dir import read_train_result
from tfrs_llmrec.workflow.seeds import MissingRunMetricsError, load_run_metrics

CELLS = (("recall@20", "overall"), ("recall@20", "head_items"), ("recall@20", "tail_items"),
         ("ndcg@20", "overall"), ("ndcg@20", "tail_items"), ("recall@50", "overall"))


def cell(summary, std, group, metric) -> str:
    if not summary.get(group):
        return "-"
    value = f"{summary[group][metric]:.4f}"
    if std is not None and std.get(group) is not None:
        value += f" ± {std[group][metric]:.4f}"
    return value


def training_cells(run_dir: Path, metrics: dict) -> tuple:
    """(best epoch, seconds of training) of the trained model: means over seeds for an aggregate."""
    if "training" in metrics:
        training = metrics["training"]
        epochs = training.get("best_epoch", [])
        seconds = training.get("seconds", [])
        best = "/".join(str(epoch) for epoch in epochs) or "-"
        return best, (sum(seconds) / len(seconds) if seconds else 0.0)
    result = read_train_result(run_dir)
    return str(result.get("best_epoch", "-")), float(result.get("seconds", 0.0))


def trained_model(run_dir: Path, metrics: dict) -> str:
    if "runs" in metrics:
        run_dir = Path(metrics["runs"][0])
    return read_train_result(run_dir).get("model", "")


def rows(run_dir: Path, metrics: dict, printed: set):
    stats = json.loads((Path(metrics["dataset"]) / "stats.json").read_text(encoding="utf-8"))
    dataset = stats.get("dataset", run_dir.name)
    trained = trained_model(run_dir, metrics)
    seeds = len(metrics.get("seeds", [])) or 1
    for model, result in metrics["models"].items():
        label = f"{model} (`{run_dir.name}`)" if model == trained else model
        if (dataset, label) in printed:
            continue
        printed.add((dataset, label))
        std = result.get("std")
        cells = [cell(result["summary"], std, group, metric) for metric, group in CELLS]
        best, seconds = training_cells(run_dir, metrics) if model == trained else ("-", 0.0)
        yield metrics["split"], f"| {dataset} | {label} | {seeds} | " + " | ".join(cells) + \
            f" | {best} | {seconds:.0f} s |"


def main(argv) -> int:
    run_dirs = [Path(run_dir) for run_dir in argv]
    try:
        runs = load_run_metrics(run_dirs)
    except MissingRunMetricsError as error:
        print(f"results_table: {error}", file=sys.stderr)
        return 1
    lines, splits, printed = [], set(), set()
    for run_dir, metrics in zip(run_dirs, runs):
        for split, row in rows(run_dir, metrics, printed):
            splits.add(split)
            lines.append(row)
    if len(splits) > 1:
        print(f"results_table: the runs report different splits ({', '.join(sorted(splits))}); "
              "make one table per split", file=sys.stderr)
        return 2
    print(f"Split: {splits.pop() if splits else '-'}. Cells: mean ± sample standard deviation over seeds "
          "where seeds > 1.\n")
    header = " | ".join(f"{metric} {group.replace('_items', '')}" for metric, group in CELLS)
    print(f"| dataset | model (run) | seeds | {header} | best epoch | train |")
    print("|---|---|---|" + "---|" * len(CELLS) + "---|---|")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
