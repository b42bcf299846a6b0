"""Prints the README's CTR table from finished ranker runs: python scripts/ctr_results_table.py runs/<name> ...

A run is one `llmrec run` directory or the aggregate of `llmrec run --seeds N`
(`runs/<name>-<N>seeds`), whose cells are mean ± sample standard deviation over its seeds. A row
per run: AUC, GAUC and log loss overall and on head / tail items (top 20% by training
impressions), the best and last epochs (per seed) and the training time per epoch. A run evaluated
with `cascade.retriever_run` also gets a cascade row: recall of the retriever's top_k, then each
metric in the retriever's order → the ranker's reordering of the same candidates."""

import json
import sys
from pathlib import Path

from tfrs_llmrec.training.run_dir import TRAIN_RESULT_FILE
from tfrs_llmrec.workflow.seeds import MissingRunMetricsError, buckets_over_seeds, load_run_metrics

GROUPS = ("overall", "head_items", "tail_items")
GATE_SUFFIX = "_by_popularity_bucket"


def _value(summary, std, group, metric) -> str:
    text = f"{summary[group][metric]:.4f}"
    if std is not None and std.get(group) is not None:
        text += f" ± {std[group][metric]:.4f}"
    return text


def _training(run_dir: Path, metrics: dict) -> dict:
    """Best epochs, epochs run and seconds of training, one list entry per seed."""
    if "training" in metrics:
        return metrics["training"]
    train = json.loads((run_dir / TRAIN_RESULT_FILE).read_text(encoding="utf-8"))
    return {key: [train[key]] for key in ("best_epoch", "epochs_completed", "seconds")}


def row(run_dir: Path, metrics: dict) -> str:
    (model, result), = metrics["models"].items()
    summary, std = result["summary"], result.get("std")
    training = _training(run_dir, metrics)

    def cells(metric):
        return " / ".join(_value(summary, std, group, metric) for group in GROUPS)

    epochs = ", ".join(f"{best}/{run}" for best, run in zip(training["best_epoch"], training["epochs_completed"]))
    per_epoch = sum(training["seconds"]) / max(sum(training["epochs_completed"]), 1)
    seeds = len(metrics.get("seeds", [])) or 1
    return (f"| {metrics['experiment']} | {model} | {seeds} | {cells('auc')} | {cells('gauc')} | "
            f"{_value(summary, std, 'overall', 'logloss')} | {epochs} | {per_epoch:.1f} s |")


def gate_rows(metrics: dict) -> list:
    """For a seed aggregate of a model with gates (AKT-Rec), a row per gate: its mean per item-popularity
    bucket over the seeds, and bucket 0 minus bucket 9 as mean ± sample std over the seeds."""
    (model, _), = metrics["models"].items()
    seed_results = [run["models"][model] for run in load_run_metrics(metrics.get("runs", []))]
    rows = []
    for key in [key for key in (seed_results[0] if seed_results else {}) if key.endswith(GATE_SUFFIX)]:
        field = next(name for name in seed_results[0][key][0] if name.startswith("mean_"))
        means, drop, drop_std = buckets_over_seeds([[bucket[field] for bucket in result[key]]
                                                    for result in seed_results])
        rows.append(f"| {metrics['experiment']} | {key.removesuffix(GATE_SUFFIX)} | "
                    + " ".join(f"{mean:.3f}" for mean in means) + f" | {drop:+.3f} ± {drop_std:.3f} |")
    return rows


def _cascade(metrics: dict):
    """(cascade, cascade_std, the candidates' metric recall@top_k); Nones without a cascade."""
    (_, result), = metrics["models"].items()
    cascade = result.get("cascade")
    candidates = None if cascade is None else f"recall@{int(cascade['top_k'])}"
    return cascade, result.get("cascade_std"), candidates


def cascade_metrics(metrics: dict) -> list:
    """The cutoffs the run's cascade reports beside the candidates' recall@top_k ([] without one)."""
    cascade, _, candidates = _cascade(metrics)
    return [] if cascade is None else [name for name in cascade["retrieval"] if name != candidates]


def cascade_row(metrics: dict, columns: list):
    """The run's retrieval-then-ranking row over the cutoffs `columns` (mean ± std for an aggregate;
    "-" for a cutoff it lacks), None without a cascade."""
    cascade, std, candidates = _cascade(metrics)
    if cascade is None:
        return None

    def cell(order, metric):
        text = f"{cascade[order][metric]:.4f}"
        return text + (f" ± {std[order][metric]:.4f}" if std is not None else "")

    def pair(metric):
        return f"{cell('retrieval', metric)} → {cell('reranked', metric)}" if metric in cascade["retrieval"] else "-"

    retriever = cascade["retriever_run"] or f"{cascade['retriever']} (one run per seed)"
    return (f"| {metrics['experiment']} | {retriever} | {cascade['num_users']:.0f} | "
            f"{cell('retrieval', candidates)} | " + " | ".join(map(pair, columns)) + " |")


def main(argv) -> int:
    run_dirs = [Path(run_dir) for run_dir in argv]
    try:
        runs = list(zip(run_dirs, load_run_metrics(run_dirs)))
        gates = [line for _, metrics in runs for line in gate_rows(metrics)]
    except MissingRunMetricsError as error:
        print(f"ctr_results_table: {error}", file=sys.stderr)
        return 1
    print("| run | model | seeds | AUC (all / head / tail) | GAUC (all / head / tail) | log loss | best / epochs | "
          "s per epoch |")
    print("|---|---|---|---|---|---|---|---|")
    for run_dir, metrics in runs:
        print(row(run_dir, metrics))
    if gates:
        print("\n| run (mean over seeds) | gate | bucket 0 … bucket 9 | bucket 0 − bucket 9 (mean ± std over seeds) |")
        print("|---|---|---|---|")
        print("\n".join(gates))
    columns = list(dict.fromkeys(column for _, metrics in runs for column in cascade_metrics(metrics)))
    cascades = [line for line in (cascade_row(metrics, columns) for _, metrics in runs) if line is not None]
    if cascades:
        print("\n| run | retriever | users | recall@top_k (the candidates) | "
              + " | ".join(f"{column} retrieval → reranked" for column in columns) + " |")
        print("|---|---|---|---|" + "---|" * len(columns))
        print("\n".join(cascades))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
