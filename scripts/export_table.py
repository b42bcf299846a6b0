"""Prints the README's export tables from seed aggregates: python scripts/export_table.py runs/<name>-3seeds ...

Per aggregate (`llmrec run --seeds N` with the export stage on), each seed run's export.json gives
one row of the checks table: the reloaded BruteForce query model's largest difference from the
in-memory queries and the lowest recall@K of the BruteForce and ScaNN models against exact search
over the seeds (ScaNN's leaves searched beside it); and, for models with a semantic item tower, one
row of the cold-start table: recall@20 overall / tail with the trained item embeddings and with every
catalogue item embedded from its text alone, as mean ± sample std over the seeds; and, for AlphaRec's
intention model, one row of HR@20 with the history alone and with the held-out item's title as the
query. Runs of different evaluation splits are refused (exit 2): both are measured on the run's split."""

import json
import sys
from pathlib import Path

from tfrs_llmrec.workflow.run import EXPORT_DIR
from tfrs_llmrec.workflow.seeds import MissingRunMetricsError, load_run_metrics, mean_and_std
from tfrs_llmrec.workflow.stages import EXPORT_MANIFEST


def export_manifest(run_dir: Path) -> Path:
    return run_dir / EXPORT_DIR / EXPORT_MANIFEST


def _mean_std(values) -> str:
    mean, std = mean_and_std(values)
    return f"{mean:.4f} ± {std:.4f}"


def rows(aggregate_dir: Path, exports: list):
    k = exports[0]["k"]
    brute_force = [export["models"]["brute_force"] for export in exports]
    scann = [export["models"]["scann"] for export in exports]
    leaves = sorted({(entry["num_leaves_to_search"], entry["num_leaves"]) for entry in scann})
    checks = (f"| `{aggregate_dir.name}` | {max(entry['query_max_abs_diff'] for entry in brute_force):.1e} | "
              f"{min(entry[f'recall@{k}_vs_exact'] for entry in brute_force):.3f} | "
              f"{min(entry[f'recall@{k}_vs_exact'] for entry in scann):.3f} "
              f"({', '.join(f'{searched} of {total}' for searched, total in leaves)}) |")
    colds = [export["models"]["item_tower"].get("catalogue_as_new_items") for export in exports]
    if any(cold is None for cold in colds):
        return checks, None
    cold = (f"| `{aggregate_dir.name}` | "
            + " | ".join(f"{_mean_std([c[f'recall@20_{label}'] for c in colds])} / "
                         f"{_mean_std([c[f'recall@20_tail_{label}'] for c in colds])}"
                         for label in ("trained", "text_only")) + " |")
    return checks, cold


def intention_row(aggregate_dir: Path, exports: list):
    """HR@20 of the intention model with the history alone and with the held-out item's title as the
    query (an oracle), mean ± std over the seeds; None for a model without the intention export."""
    intentions = [export.get("intention") for export in exports]
    if any(intention is None or "skipped" in intention for intention in intentions):
        return None
    users = sorted({intention["num_users"] for intention in intentions})
    return (f"| `{aggregate_dir.name}` | {', '.join(map(str, users))} | "
            f"{_mean_std([intention['hr@20_history_only'] for intention in intentions])} | "
            f"{_mean_std([intention['hr@20_with_target_title'] for intention in intentions])} |")


def main(argv) -> int:
    aggregate_dirs = [Path(path) for path in argv]
    try:
        aggregates = load_run_metrics(aggregate_dirs)
    except MissingRunMetricsError as error:
        print(f"export_table: {error}", file=sys.stderr)
        return 1
    run_dirs = [[Path(run) for run in aggregate["runs"]] for aggregate in aggregates]
    missing = [str(run) for runs in run_dirs for run in runs if not export_manifest(run).is_file()]
    if missing:
        print(f"export_table: no {EXPORT_DIR}/{EXPORT_MANIFEST} in {', '.join(missing)} (export.enabled false?)",
              file=sys.stderr)
        return 1
    exports = [[json.loads(export_manifest(run).read_text(encoding="utf-8")) for run in runs] for runs in run_dirs]
    splits = sorted({export["config"]["eval"]["split"] for runs in exports for export in runs})
    if len(splits) > 1:
        print(f"export_table: the runs were evaluated on different splits ({', '.join(splits)}); "
              "give runs of one split", file=sys.stderr)
        return 2
    table = [(*rows(aggregate_dir, runs), intention_row(aggregate_dir, runs))
             for aggregate_dir, runs in zip(aggregate_dirs, exports)]
    k = exports[0][0]["k"]
    print(f"| run (seeds) | query SavedModel vs in-memory (max abs diff, worst seed) | BruteForce recall@{k} "
          f"(worst seed) | ScaNN recall@{k} (worst seed; leaves searched) |")
    print("|---|---|---|---|")
    print("\n".join(checks for checks, _, _ in table))
    cold_rows = [cold for _, cold, _ in table if cold is not None]
    if cold_rows:
        print(f"\n| run ({splits[0]} split, mean ± std over seeds) | recall@20 with the trained embeddings "
              "(all / tail) | every item as a new item (all / tail) |")
        print("|---|---|---|")
        print("\n".join(cold_rows))
    intention_rows = [intention for _, _, intention in table if intention is not None]
    if intention_rows:
        print(f"\n| run ({splits[0]} split, mean ± std over seeds) | users | HR@20, history only | "
              "HR@20, held-out item's title as the query |")
        print("|---|---|---|---|")
        print("\n".join(intention_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
