"""Prints the README's MotiR tables from seed aggregates: python scripts/motir_table.py runs/<name>-3seeds ...

Per aggregate (`llmrec run --seeds N`), one row of the variants table: stage 2's alignment epochs
and final mean cosine per seed, the semantic tower's own validation HR@20 after stage 2 (mean
over seeds), and recall@20 overall / head / tail as mean ± sample std; then one row of the gate
table: the mean semantic weight per item-popularity bucket, averaged over the seeds, and the
least popular bucket's weight minus the most popular's (mean ± sample std over seeds)."""

import json
import sys
from pathlib import Path

from tfrs_llmrec.training.run_dir import TRAIN_RESULT_FILE
from tfrs_llmrec.workflow.seeds import (MissingRunMetricsError, buckets_over_seeds,
                                        load_run_metrics, mean_and_std)


def rows(aggregate_dir: Path, aggregate: dict):
    runs = [Path(run) for run in aggregate["runs"]]
    aligns = [json.loads((run / TRAIN_RESULT_FILE).read_text(encoding="utf-8"))["stages"]["align"] for run in runs]
    epochs = ", ".join(f"{align['epochs_completed']} ({align['history']['val_mean_cosine'][-1]:.3f})"
                       for align in aligns)
    hit_rate, _ = mean_and_std([align["history"]["val_semantic_only_hr@20"][-1] for align in aligns])
    result = aggregate["models"]["motir"]
    recall = " / ".join(f"{result['summary'][group]['recall@20']:.4f} ± {result['std'][group]['recall@20']:.4f}"
                        for group in ("overall", "head_items", "tail_items"))
    variant = f"| `{aggregate_dir.name}` | {epochs} | {hit_rate:.3f} | {recall} |"
    buckets = [[bucket["mean_semantic_weight"] for bucket in metrics["models"]["motir"]
                ["semantic_weight_by_popularity_bucket"]] for metrics in load_run_metrics(runs)]
    weights, drop, drop_std = buckets_over_seeds(buckets)
    gate = (f"| `{aggregate_dir.name}` | " + " ".join(f"{weight:.3f}" for weight in weights) +
            f" | {drop:+.3f} ± {drop_std:.3f} |")
    return variant, gate


def main(argv) -> int:
    aggregate_dirs = [Path(path) for path in argv]
    try:
        table = [rows(aggregate_dir, aggregate)
                 for aggregate_dir, aggregate in zip(aggregate_dirs, load_run_metrics(aggregate_dirs))]
    except MissingRunMetricsError as error:
        print(f"motir_table: {error}", file=sys.stderr)
        return 1
    print("| run (3 seeds) | align epochs (final cosine) per seed | semantic-only HR@20 after stage 2 | "
          "recall@20 (all / head / tail) |")
    print("|---|---|---|---|")
    print("\n".join(variant for variant, _ in table))
    print("\n| run (mean over seeds) | bucket 0 … bucket 9 | bucket 0 − bucket 9 (mean ± std over seeds) |")
    print("|---|---|---|")
    print("\n".join(gate for _, gate in table))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
