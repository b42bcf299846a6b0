"""Prints the README's results table from finished runs: python scripts/results_table.py runs/<name> ...

Each run contributes the row of the model it trained (labelled with the run's name, so two runs of
one model stay apart) and its baselines (labelled with the model's name, printed once per dataset).
"""

import json
import sys
from pathlib import Path

GROUPS = ("overall", "head_items", "tail_items")
METRICS = ("recall@20", "ndcg@20", "hr@20", "hr@10", "hr@50")


def rows(run_dir: Path, printed: set):
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    timings = json.loads((run_dir / "timings.json").read_text(encoding="utf-8"))
    stats = json.loads((Path(metrics["dataset"]) / "stats.json").read_text(encoding="utf-8"))
    dataset = stats.get("dataset", run_dir.name)
    trained = metrics_model(run_dir)
    for model, result in metrics["models"].items():
        label = f"{model} (`{metrics['experiment']}`)" if model == trained else model
        if (dataset, label) in printed:
            continue
        printed.add((dataset, label))
        summary = result["summary"]
        cells = [" / ".join(f"{summary[group][metric]:.4f}" if summary[group] else "-" for group in GROUPS)
                 for metric in METRICS]
        seconds = timings.get("train", 0.0) if model == trained else 0.0
        yield f"| {dataset} | {label} | " + " | ".join(cells) + f" | {seconds:.0f} s |"


def metrics_model(run_dir: Path) -> str:
    train = run_dir / "train_result.json"
    return json.loads(train.read_text(encoding="utf-8")).get("model", "") if train.is_file() else ""


def main(argv) -> int:
    header = " | ".join(f"{metric} (all / head / tail)" for metric in METRICS)
    print(f"| dataset | model (run) | {header} | train |")
    print("|---|---|" + "---|" * len(METRICS) + "---|")
    printed: set = set()
    for run_dir in argv:
        for row in rows(Path(run_dir), printed):
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
