"""Prints the README's CTR table from finished ranker runs: python scripts/ctr_results_table.py runs/<name> ...

A row per run: AUC, GAUC and log loss overall and on head / tail items (top 20% by training
impressions), and the training time per epoch."""

import json
import sys
from pathlib import Path

GROUPS = ("overall", "head_items", "tail_items")


def row(run_dir: Path) -> str:
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    train = json.loads((run_dir / "train_result.json").read_text(encoding="utf-8"))
    (model, result), = metrics["models"].items()
    summary = result["summary"]

    def cells(metric):
        return " / ".join(f"{summary[group][metric]:.4f}" for group in GROUPS)

    per_epoch = train["seconds"] / max(train["epochs_completed"], 1)
    return (f"| {metrics['experiment']} | {model} | {cells('auc')} | {cells('gauc')} | "
            f"{summary['overall']['logloss']:.4f} | {train['best_epoch']}/{train['epochs_completed']} | "
            f"{per_epoch:.1f} s |")


def main(argv) -> int:
    print("| run | model | AUC (all / head / tail) | GAUC (all / head / tail) | log loss | best / epochs | "
          "s per epoch |")
    print("|---|---|---|---|---|---|---|")
    for run_dir in argv:
        print(row(Path(run_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
