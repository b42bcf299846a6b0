"""Scores RecBole's embeddings with our evaluator and tables them beside our runs (our venv).

    .venv/bin/python scripts/parity/compare.py --out runs/parity \
        --entry ml100k configs/ml100k_mf_bpr.yaml runs/ml100k-mf-bpr-parity runs/parity/ml100k/recbole-bpr \
        --entry ml100k configs/ml100k_lightgcn.yaml runs/ml100k-lightgcn-parity runs/parity/ml100k/recbole-lightgcn

Each --entry pairs one of our runs of a config (`llmrec run ... --set eval.split=test`) with the
RecBole output (recbole_train.py) of the same dataset. The RecBole embeddings go through exactly
what scored our run: `evaluate_queries` with the run's resolved config.yaml (ks, batch sizes) on
the run's prepared dataset, full ranking over the catalogue with the user's earlier-split items
masked, head/tail by training popularity. Ours are read from the run's metrics.json and
train_result.json. Outputs that no longer match the config (our run trained with an older
version of it, RecBole trained on another prepared dataset or monitor) stop the comparison.
Prints one markdown table per dataset and writes them to <out>/parity.md, the numbers to
<out>/parity.json.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from tfrs_llmrec.atomic_files import write_atomically, write_json_atomically
from tfrs_llmrec.config import ExperimentConfig, load_experiment, to_dict
from tfrs_llmrec.data.dataset import PreparedDataset, load_eval_targets
from tfrs_llmrec.training.run_dir import CONFIG_FILE, differing_keys, training_identity
from tfrs_llmrec.workflow.run import METRICS_FILE, dataset_dir
from tfrs_llmrec.workflow.stages import TRAIN_RESULT_FILE, evaluate_queries

CUTOFF = 20
GROUPS = ("overall", "head_items", "tail_items")
# What the tables show of our run's resolved config (keys it lacks are left out).
OUR_SETTINGS = ("train.optimizer", "train.learning_rate", "train.batch_size", "model.l2_weight",
                "model.lightgcn_layers", "model.negatives_exclude_train_items", "model.embedding_init", "train.monitor",
                "train.monitor_max_users", "train.early_stopping_patience", "train.epochs", "seed")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"{path}: missing; run scripts/parity/run.sh (or the step that writes it) first")
    return json.loads(path.read_text(encoding="utf-8"))


def _at_cutoff(summary: dict) -> Dict[str, Optional[float]]:
    """{"recall@20/overall": ..., "ndcg@20/tail_items": ...} of an evaluator summary (None: no users)."""
    return {f"{metric}@{CUTOFF}/{group}": summary[group][f"{metric}@{CUTOFF}"]
            for metric in ("recall", "ndcg") for group in GROUPS}


def run_config(config_path: Path, run_dir: Path) -> ExperimentConfig:
    """The run's resolved config, after checking that `config_path` (with the run's name and seed:
    PARITY_SEEDS runs it with several) still trains the same model."""
    run = load_experiment(run_dir / CONFIG_FILE)
    current = training_identity(to_dict(load_experiment(config_path, [f"name={run.name}", f"seed={run.seed}"])))
    changes = differing_keys(training_identity(to_dict(run)), current)
    if changes:
        raise SystemExit(f"{run_dir} was trained with another version of {config_path} ({'; '.join(changes)}); "
                         f"delete {run_dir} and rerun")
    return run


def our_row(config: ExperimentConfig, run_dir: Path) -> dict:
    metrics = _read_json(run_dir / METRICS_FILE)
    if metrics["split"] != "test":
        raise SystemExit(f"{run_dir / METRICS_FILE}: evaluated on {metrics['split']!r}; the parity runs use "
                         "--set eval.split=test")
    training = _read_json(run_dir / TRAIN_RESULT_FILE)
    resolved = to_dict(config)
    settings = {}
    for key in OUR_SETTINGS:
        section, _, name = key.rpartition(".")
        values = resolved[section] if section else resolved
        if name in values and (name != "lightgcn_layers" or config.model.name == "lightgcn"):
            settings[key] = values[name]
    return {
        "implementation": "ours", "model": config.model.name,
        **_at_cutoff(metrics["models"][config.model.name]["summary"]),
        "monitor": config.train.monitor, "valid_monitor": training["best_value"],
        "best_epoch": training["best_epoch"], "epochs_run": training["epochs_completed"],
        # `seconds` adds up every invocation of a resumed run (training.trainer.TrainResult).
        "seconds_per_epoch": (training["seconds"] / training["epochs_completed"]) if training["epochs_completed"]
        else None,
        "train_seconds_per_epoch": None,
        "settings": settings,
    }


def recbole_settings(result: dict) -> dict:
    """RecBole's settings that differ from ours or explain a difference."""
    settings = result["recbole_settings"]
    negatives = settings["train_neg_sample_args"]
    return {"learner": settings["learner"], "learning_rate": settings["learning_rate"],
            "train_batch_size": settings["train_batch_size"], "weight_decay": settings["weight_decay"],
            **({"reg_weight": settings["reg_weight"], "require_pow": settings["require_pow"],
                "n_layers": settings["n_layers"]} if "n_layers" in settings else {}),
            "negatives": f"{negatives['sample_num']} {negatives['distribution']}, never a training item of the user",
            "valid_metric": settings["valid_metric"], "stopping_step": settings["stopping_step"],
            "epochs": settings["epochs"], "seed": settings["seed"],
            **({"overrides": result["overrides"]} if result["overrides"] else {})}


def recbole_row(config: ExperimentConfig, dataset: PreparedDataset, recbole_dir: Path) -> dict:
    result = _read_json(recbole_dir / "result.json")
    stale = f"delete {recbole_dir.parent} (the export and RecBole's runs of this dataset) and rerun"
    if Path(result["dataset_dir"]) != Path(dataset.root):
        raise SystemExit(f"{recbole_dir}: trained on {result['dataset_dir']}, our run on {dataset.root}; {stale}")
    if result["monitor"] != config.train.monitor:
        raise SystemExit(f"{recbole_dir}: selected on {result['monitor']}, our run on {config.train.monitor}; {stale}")
    users = np.load(recbole_dir / "user_embeddings.npy")
    items = np.load(recbole_dir / "item_embeddings.npy")
    if users.shape[0] != dataset.num_users or items.shape[0] != dataset.num_items:
        raise SystemExit(f"{recbole_dir}: {users.shape[0]} users / {items.shape[0]} items, the dataset has "
                         f"{dataset.num_users} / {dataset.num_items}; {stale}")

    def evaluate(split: str) -> dict:
        return evaluate_queries(config, dataset, load_eval_targets(dataset, split), lambda batch: users[batch], items,
                                progress=False)

    train_seconds, valid_seconds = result["train_seconds_per_epoch"], result["valid_seconds_per_epoch"]
    return {
        "implementation": f"RecBole {result['versions']['recbole']}", "model": result["model"],
        **_at_cutoff(evaluate("test")),
        "monitor": config.train.monitor, "valid_monitor": evaluate("valid")["overall"][config.train.monitor],
        "best_epoch": result["best_epoch"], "epochs_run": result["epochs_run"],
        "seconds_per_epoch": float(np.mean(np.add(train_seconds, valid_seconds))),
        "train_seconds_per_epoch": float(np.mean(train_seconds)),
        "torch_threads": result["torch_threads"],
        "settings": recbole_settings(result),
        "recbole_test_result": {key: value for key, value in result["recbole_test_result"].items()
                                if key.endswith(f"@{CUTOFF}")},
    }


def compare_entry(config_path: Path, run_dir: Path, recbole_dir: Path) -> List[dict]:
    config = run_config(config_path, run_dir)
    dataset = PreparedDataset.open(dataset_dir(config))
    return [our_row(config, run_dir), recbole_row(config, dataset, recbole_dir)]


def _number(value: Optional[float], digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _seconds(row: dict) -> str:
    total = _number(row["seconds_per_epoch"], 2)
    if row["train_seconds_per_epoch"] is None:
        return total
    threads = row["torch_threads"]
    return f"{total} (train {row['train_seconds_per_epoch']:.2f}; {threads} thread{'s' if threads > 1 else ''})"


def markdown(name: str, pairs: List[List[dict]]) -> str:
    lines = [f"### {name}: test split, scored by our evaluator", "",
             "| model | implementation | recall@20 all | head | tail | ndcg@20 all | head | tail "
             "| valid (monitor) | best epoch / epochs run | s / epoch |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for pair in pairs:
        for row in pair:
            cells = [row["model"], row["implementation"],
                     *(_number(row[f"{metric}@{CUTOFF}/{group}"]) for metric in ("recall", "ndcg") for group in GROUPS),
                     f"{row['monitor']} {_number(row['valid_monitor'])}", f"{row['best_epoch']} / {row['epochs_run']}",
                     _seconds(row)]
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    key = f"recall@{CUTOFF}/overall"
    for ours, recbole in pairs:
        ratio = ours[key] / recbole[key] if recbole[key] else float("nan")
        lines.append(f"- {ours['model']} (seeds {ours['settings']['seed']} / {recbole['settings']['seed']}): ours / "
                     f"RecBole {recbole['model']} recall@20 = {ratio:.2f} (RecBole's own evaluator on its model: "
                     f"recall@20 {recbole['recbole_test_result'][f'recall@{CUTOFF}']:.4f})")
    by_model: Dict[str, List[List[dict]]] = defaultdict(list)
    for pair in pairs:
        by_model[pair[0]["model"]].append(pair)
    for model, seeded in by_model.items():
        if len(seeded) > 1:
            ours, theirs = ([pair[side][key] for pair in seeded] for side in (0, 1))
            lines.append(f"- {model} over {len(seeded)} seeds each (mean ± sample std): ours {np.mean(ours):.4f} ± "
                         f"{np.std(ours, ddof=1):.4f}, RecBole {np.mean(theirs):.4f} ± {np.std(theirs, ddof=1):.4f}; "
                         f"ours / RecBole recall@20 = {np.mean(ours) / np.mean(theirs):.2f}")
    for seeded in by_model.values():
        ours, recbole = seeded[0]
        for label, row in ((f"ours {ours['model']}", ours), (f"RecBole {recbole['model']}", recbole)):
            lines.append(f"- settings, {label}: " + ", ".join(f"{k} {v}" for k, v in row["settings"].items()))
    return "\n".join(lines) + "\n"


NOTES = """Valid (monitor): the metric both trainings selected their best epoch and stopped on. Ours
is the training monitor's best value (on a sample of validation users if train.monitor_max_users
is set); RecBole's is our evaluator on every validation user with the best epoch's embeddings.
s / epoch: wall seconds per epoch including the validation pass (ours also writes its
checkpoints); RecBole's training-only time and torch threads in parentheses.
"""


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry", nargs=4, action="append", required=True,
                        metavar=("DATASET", "CONFIG", "OUR_RUN_DIR", "RECBOLE_DIR"),
                        help="one model: a dataset label, our config and run directory, the RecBole output")
    parser.add_argument("--out", required=True, help="directory for parity.md and parity.json")
    args = parser.parse_args(argv)

    by_dataset: Dict[str, List[List[dict]]] = defaultdict(list)
    for name, config_path, run_dir, recbole_dir in args.entry:
        by_dataset[name].append(compare_entry(Path(config_path), Path(run_dir), Path(recbole_dir)))
    text = "\n".join(markdown(name, pairs) for name, pairs in by_dataset.items()) + "\n" + NOTES
    print(text)
    out = Path(args.out)
    write_atomically(out / "parity.md", lambda handle: handle.write("# Parity with RecBole\n\n" + text))
    write_json_atomically(out / "parity.json", by_dataset)
    print(f"compare: wrote {out / 'parity.md'} and {out / 'parity.json'}")


if __name__ == "__main__":
    main()
