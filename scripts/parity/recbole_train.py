"""Trains RecBole's BPR or LightGCN on exported benchmark files (run with the scratch venv only).

    .parity-venv/bin/python scripts/parity/recbole_train.py --model LightGCN \
        --data-path runs/parity/ml100k/atomic --dataset ml100k --out runs/parity/ml100k/recbole-lightgcn

Reads `<data-path>/<dataset>/<dataset>.{train,valid,test}.inter` and export.json (export_atomic.py),
trains with RecBole's own defaults for the model except what is listed in `settings()`, and
publishes `<out>/` as one directory when done:

    user_embeddings.npy  [num_users, d]   row u: our user index u (RecBole's [PAD] row dropped)
    item_embeddings.npy  [num_items, d]   row i: our item index i
    result.json          timings per epoch, best and run epochs, RecBole's own valid/test metrics
    log/                 RecBole's log of the run

The embeddings are those of the best validation epoch: BPR's tables; LightGCN's propagated ones
(`model.forward()`), which is what both score with. This script never imports TensorFlow or our
package: our evaluator scores the embeddings afterwards (compare.py).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import recbole
import torch
import yaml
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.general_recommender import BPR, LightGCN
from recbole.trainer import Trainer
from recbole.utils import init_logger, init_seed

MODELS = {"BPR": BPR, "LightGCN": LightGCN}
EXPORT_FILE = "export.json"
RESULT_FILE = "result.json"
EVAL_USERS_PER_BATCH = 256

# torch >= 2.6 loads with weights_only=True by default, which refuses the RecBole Config object
# inside RecBole's own best-epoch checkpoint (written by this process), so Trainer.evaluate could
# not reload the best weights. RecBole calls `torch.load` through the module attribute.
torch.load = functools.partial(torch.load, weights_only=False)


class TimedTrainer(Trainer):
    """RecBole's Trainer, recording per-epoch training and validation seconds, losses, validation
    scores and the epoch whose weights were last saved as the best."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.train_seconds: List[float] = []
        self.valid_seconds: List[float] = []
        self.losses: List[float] = []
        self.valid_scores: List[float] = []
        self.best_epoch: Optional[int] = None

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        started = time.perf_counter()
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.train_seconds.append(time.perf_counter() - started)
        self.losses.append(float(sum(loss) if isinstance(loss, tuple) else loss))
        return loss

    def _valid_epoch(self, valid_data, show_progress=False):
        started = time.perf_counter()
        score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self.valid_seconds.append(time.perf_counter() - started)
        self.valid_scores.append(float(score))
        return score, result

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        # fit() saves exactly when the validation score is at least the best so far.
        super()._save_checkpoint(epoch, verbose=verbose, **kwargs)
        self.best_epoch = epoch


def recbole_metric(monitor: str) -> Tuple[str, int]:
    """Our monitor (recall@K, ndcg@K, hr@K) as RecBole's valid_metric, and its K."""
    name, _, cutoff = monitor.partition("@")
    names = {"recall": "recall", "ndcg": "ndcg", "hr": "hit"}
    if name not in names or not cutoff.isdigit():
        raise SystemExit(f"--valid-metric {monitor!r}: expected recall@K, ndcg@K or hr@K (RecBole's MRR is cut at K, "
                         "ours is not)")
    return f"{names[name]}@{cutoff}", int(cutoff)


def settings(args: argparse.Namespace, data_path: Path, checkpoint_dir: Path, num_items: int) -> Dict[str, object]:
    """RecBole's config_dict: only what differs from RecBole's defaults for the model."""
    valid_metric, cutoff = recbole_metric(args.valid_metric)
    overrides = {
        "data_path": str(data_path),
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"]},
        "checkpoint_dir": str(checkpoint_dir),
        "seed": args.seed,
        "show_progress": False,
        "embedding_size": 64,  # our configs' tower.dim
        "epochs": args.epochs,
        "stopping_step": args.stopping_step,
        "train_batch_size": args.batch_size,
        # Validated every epoch (RecBole's eval_step 1) on our run's train.monitor, which picks
        # our best epoch and stops our training too.
        "valid_metric": valid_metric,
        "metrics": ["Recall", "NDCG", "Hit", "MRR"],
        "topk": sorted({10, 20, 50, cutoff}),
        # Speed only, no metric changes: full-sort evaluation counts this batch in user x item
        # scores, so RecBole's 4096 scores one user per batch once the catalogue passes 4096 items
        # (Amazon Games: 16,857 with [PAD]; a validation pass took 57-128 s instead of seconds).
        "eval_batch_size": EVAL_USERS_PER_BATCH * (num_items + 1),
    }
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    return overrides


def aligned(embeddings: torch.Tensor, tokens: Dict[str, int], count: int, what: str) -> np.ndarray:
    """Rows of RecBole's `embeddings` reordered so row i is our index i (RecBole's token "i")."""
    missing = [index for index in range(count) if str(index) not in tokens]
    if missing:
        raise SystemExit(f"{len(missing)} of our {what} indices never occur in the benchmark files "
                         f"(first: {missing[:5]}); RecBole has no embedding for them")
    rows = np.array([tokens[str(index)] for index in range(count)], dtype=np.int64)
    return embeddings.detach().cpu().numpy()[rows].astype(np.float32)


def final_embeddings(model) -> tuple:
    """(users, items) as the model scores them, RecBole id order ([PAD] at 0)."""
    with torch.no_grad():
        if isinstance(model, LightGCN):
            return model.forward()
        return model.user_embedding.weight, model.item_embedding.weight


def publish(staging: Path, out: Path) -> None:
    """Replaces `out` by the complete `staging` directory (the old one is renamed aside first)."""
    if out.exists():
        retired = out.with_name(f".{out.name}.old")
        shutil.rmtree(retired, ignore_errors=True)
        os.rename(out, retired)
        os.rename(staging, out)
        shutil.rmtree(retired)
    else:
        os.rename(staging, out)


def train(args: argparse.Namespace) -> dict:
    data_path, out = Path(args.data_path).resolve(), Path(args.out).resolve()
    export = json.loads((data_path / args.dataset / EXPORT_FILE).read_text(encoding="utf-8"))
    out.parent.mkdir(parents=True, exist_ok=True)
    for leftover in out.parent.glob(f".{out.name}.partial-*"):  # of a killed run
        shutil.rmtree(leftover)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    previous_cwd = os.getcwd()
    # RecBole's Config also reads `--key=value` options from sys.argv; ours are parsed already.
    sys.argv = sys.argv[:1]
    try:
        # RecBole writes log/ and log_tensorboard/ under the working directory: keep them in staging.
        os.chdir(staging)
        config = Config(model=args.model, dataset=args.dataset,
                        config_dict=settings(args, data_path, staging / "checkpoints", export["num_items"]))
        init_seed(config["seed"], config["reproducibility"])
        init_logger(config)
        dataset = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, dataset)
        # Reseeded before the model is built, as RecBole's run_recbole does.
        init_seed(config["seed"], config["reproducibility"])
        model = MODELS[args.model](config, train_data.dataset).to(config["device"])
        trainer = TimedTrainer(config, model)
        started = time.perf_counter()
        best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, saved=True,
                                                          show_progress=config["show_progress"])
        fit_seconds = time.perf_counter() - started
        test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
        model.eval()
        users, items = final_embeddings(model)
        np.save(staging / "user_embeddings.npy",
                aligned(users, dataset.field2token_id["user_id"], export["num_users"], "user"))
        np.save(staging / "item_embeddings.npy",
                aligned(items, dataset.field2token_id["item_id"], export["num_items"], "item"))
        epochs_run = len(trainer.train_seconds)
        result = {
            "model": args.model, "dataset": args.dataset, "dataset_dir": export["dataset_dir"],
            "monitor": args.valid_metric,
            "recbole_settings": {key: config[key] for key in (
                "embedding_size", "learning_rate", "learner", "weight_decay", "train_batch_size", "epochs",
                "stopping_step", "train_neg_sample_args", "seed", "valid_metric", "eval_batch_size", "n_layers",
                "reg_weight", "require_pow") if key in config},
            "overrides": list(args.set),
            "epochs_run": epochs_run,
            # 1-based, as our train_result.json counts epochs.
            "best_epoch": trainer.best_epoch + 1,
            "best_valid_score": float(best_valid_score),
            "train_seconds_per_epoch": trainer.train_seconds,
            "valid_seconds_per_epoch": trainer.valid_seconds,
            "fit_seconds": fit_seconds,
            "losses": trainer.losses,
            "valid_scores": trainer.valid_scores,
            "recbole_best_valid_result": {key: float(value) for key, value in best_valid_result.items()},
            "recbole_test_result": {key: float(value) for key, value in test_result.items()},
            "torch_threads": torch.get_num_threads(),
            "versions": {"recbole": recbole.__version__, "torch": torch.__version__,
                         "numpy": np.__version__},
        }
        shutil.rmtree(staging / "checkpoints")
        shutil.rmtree(staging / "log_tensorboard", ignore_errors=True)
        (staging / RESULT_FILE).write_text(json.dumps(result, indent=2), encoding="utf-8")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        os.chdir(previous_cwd)
    publish(staging, out)
    return result


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, choices=sorted(MODELS))
    parser.add_argument("--data-path", required=True, help="export_atomic.py's --out")
    parser.add_argument("--dataset", required=True, help="export_atomic.py's --name")
    parser.add_argument("--out", required=True, help="directory to publish the embeddings and result.json in")
    parser.add_argument("--epochs", type=int, default=300, help="epoch cap (RecBole's default: 300)")
    parser.add_argument("--stopping-step", type=int, default=10,
                        help="stop once this many consecutive validations have not reached the best "
                             "score, at the next one (RecBole's default: 10)")
    parser.add_argument("--batch-size", type=int, default=2048, help="train_batch_size (RecBole's default)")
    parser.add_argument("--valid-metric", default="recall@20",
                        help="our run's train.monitor (recall@K, ndcg@K or hr@K): RecBole's valid_metric")
    parser.add_argument("--seed", type=int, default=2020, help="RecBole's default seed")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads (default: torch's, one per core); 1 is far steadier on a machine "
                             "shared with other jobs, where a spinning worker thread waits on a descheduled one")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other RecBole setting, value parsed as YAML (repeatable), e.g. n_layers=3")
    args = parser.parse_args(argv)
    for item in args.set:
        if "=" not in item:
            parser.error(f"--set {item!r}: expected KEY=VALUE")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = train(args)
    seconds = np.add(result["train_seconds_per_epoch"], result["valid_seconds_per_epoch"])
    print(f"recbole_train: {args.model} on {args.dataset}: best epoch {result['best_epoch']} of "
          f"{result['epochs_run']}, valid {args.valid_metric} {result['best_valid_score']:.4f}, "
          f"{seconds.mean():.2f} s/epoch (train {np.mean(result['train_seconds_per_epoch']):.2f}); "
          f"RecBole's test recall@20 {result['recbole_test_result']['recall@20']:.4f} -> {args.out}")


if __name__ == "__main__":
    main()
