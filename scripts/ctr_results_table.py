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

from tfrs_llmrec.workflow.seeds import buckets_over_seeds

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
    train = json.loads((run_dir / "train_result.json").read_text(encoding="utf-8"))
    return {key: [train[key]] for key in ("best_epoch", "epochs_completed", "seconds")}


def row(run_dir: Path) -> str:
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
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


def gate_rows(run_dir: Path) -> list:
    """For a seed aggregate of a model with gates (AKT-Rec), a row per gate: its mean per item-popularity
    bucket over the seeds, and bucket 0 minus bucket 9 as mean ± sample std over the seeds."""
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    (model, _), = metrics["models"].items()
    seed_results = [json.loads((Path(run) / "metrics.json").read_text(encoding="utf-8"))["models"][model]
                    for run in metrics.get("runs", [])]
    rows = []
    for key in [key for key in (seed_results[0] if seed_results else {}) if key.endswith(GATE_SUFFIX)]:
        field = next(name for name in seed_results[0][key][0] if name.startswith("mean_"))
        means, drop, drop_std = buckets_over_seeds([[bucket[field] for bucket in result[key]]
                                                    for result in seed_results])
        rows.append(f"| {metrics['experiment']} | {key.removesuffix(GATE_SUFFIX)} | "
                    + " ".join(f"{mean:.3f}" for mean in means) + f" | {drop:+.3f} ± {drop_std:.3f} |")
    return rows


def _cascade(run_dir: Path):
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    (_, result), = metrics["models"].items()
    return metrics["experiment"], result.get("cascade"), result.get("cascade_std")


def cascade_metrics(run_dir: Path) -> list:
    """The cutoffs the run's cascade reports beside the candidates' recall@top_k ([] without one)."""
    _, cascade, _ = _cascade(run_dir)
    return [] if cascade is None else [name for name in cascade["retrieval"]
                                       if name != f"recall@{int(cascade['top_k'])}"]


def cascade_row(run_dir: Path, metrics: list):
    """The run's retrieval-then-ranking row over `metrics` (mean ± std for an aggregate; "-" for a
    cutoff it lacks), None without a cascade."""
    experiment, cascade, std = _cascade(run_dir)
    if cascade is None:
        return None

    def cell(order, metric):
        text = f"{cascade[order][metric]:.4f}"
        return text + (f" ± {std[order][metric]:.4f}" if std is not None else "")

    def pair(metric):
        return f"{cell('retrieval', metric)} → {cell('reranked', metric)}" if metric in cascade["retrieval"] else "-"

    retriever = cascade["retriever_run"] or f"{cascade['retriever']} (one run per seed)"
    candidates = cell("retrieval", f"recall@{int(cascade['top_k'])}")
    return (f"| {experiment} | {retriever} | {cascade['num_users']:.0f} | {candidates} | "
            + " | ".join(map(pair, metrics)) + " |")


def main(argv) -> int:
    print("| run | model | seeds | AUC (all / head / tail) | GAUC (all / head / tail) | log loss | best / epochs | "
          "s per epoch |")
    print("|---|---|---|---|---|---|---|---|")
    for run_dir in argv:
        print(row(Path(run_dir)))
    gates = [line for run_dir in argv for line in gate_rows(Path(run_dir))]
    if gates:
        print("\n| run (mean over seeds) | gate | bucket 0 … bucket 9 | bucket 0 − bucket 9 (mean ± std over seeds) |")
        print("|---|---|---|---|")
        print("\n".join(gates))
    metrics = list(dict.fromkeys(metric for run_dir in argv for metric in cascade_metrics(Path(run_dir))))
    cascades = [line for line in (cascade_row(Path(run_dir), metrics) for run_dir in argv) if line is not None]
    if cascades:
        print("\n| run | retriever | users | recall@top_k (the candidates) | "
              + " | ".join(f"{metric} retrieval → reranked" for metric in metrics) + " |")
        print("|---|---|---|---|" + "---|" * len(metrics))
        print("\n".join(cascades))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
