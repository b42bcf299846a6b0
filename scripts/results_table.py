"""Prints the README's results table from finished runs: python scripts/results_table.py runs/<name> ..."""

import json
import sys
from pathlib import Path

GROUPS = (("overall", "all"), ("head_items", "head items"), ("tail_items", "tail items"))
METRICS = ("recall@20", "ndcg@20", "hr@10", "hr@50")


def rows(run_dir: Path):
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    timings = json.loads((run_dir / "timings.json").read_text(encoding="utf-8"))
    stats = json.loads((Path(metrics["dataset"]) / "stats.json").read_text(encoding="utf-8"))
    for model, result in metrics["models"].items():
        summary = result["summary"]
        cells = []
        for metric in METRICS:
            cells.append(" / ".join(f"{summary[group][metric]:.4f}" if summary[group] else "-"
                                    for group, _ in GROUPS))
        seconds = timings.get("train", 0.0) if model == metrics_model(run_dir) else 0.0
        yield (f"| {stats.get('dataset', run_dir.name)} | {model} | " + " | ".join(cells)
               + f" | {seconds:.0f} s | {result['seconds']:.1f} s |")


def metrics_model(run_dir: Path) -> str:
    train = run_dir / "train_result.json"
    return json.loads(train.read_text(encoding="utf-8")).get("model", "") if train.is_file() else ""


def main(argv) -> int:
    header = " | ".join(f"{metric} (all / head / tail)" for metric in METRICS)
    print(f"| dataset | model | {header} | train | evaluate |")
    print("|---|---|" + "---|" * len(METRICS) + "---|---|")
    for run_dir in argv:
        for row in rows(Path(run_dir)):
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
