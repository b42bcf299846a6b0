"""Writes a run config's prepared split as RecBole benchmark atomic files (run with our venv).

    .venv/bin/python scripts/parity/export_atomic.py configs/ml100k_mf_bpr.yaml \
        --out runs/parity/ml100k/atomic --name ml100k

writes, as one directory renamed into place when complete:

    <out>/<name>/<name>.train.inter   <name>.valid.inter   <name>.test.inter
    <out>/<name>/export.json          what was exported: dataset directory, sizes, row counts

Each .inter file is tab-separated with the header `user_id:token<TAB>item_id:token` and one row
per interaction of PreparedDataset.split_items(split): what our trainer reads (train) and what
our evaluator scores (valid, test), users ascending, each user's items in chronological order.
The tokens are our user and item indices, so RecBole's remapped ids lead back to ours through its
`field2id_token`. No timestamp column: with pre-split benchmark files RecBole's general
recommenders never order by time.

RecBole's full-sort evaluation masks a user's items of the earlier splits (valid: train; test:
train + valid), which is exactly what our evaluator excludes under the leave_one_out and ratio
splits. Under split "users" a held-out user's input items are excluded but never trained on;
RecBole's benchmark files cannot say that, so that split is refused.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from tfrs_llmrec.atomic_files import building_directory, write_json_atomically
from tfrs_llmrec.config import load_experiment
from tfrs_llmrec.data.dataset import PreparedDataset
from tfrs_llmrec.data.spec import SPLITS
from tfrs_llmrec.workflow.run import dataset_dir

HEADER = "user_id:token\titem_id:token\n"
EXPORT_FILE = "export.json"


def split_pairs(dataset: PreparedDataset, split: str) -> np.ndarray:
    """[n, 2] (user index, item index) rows of `split`, users ascending, chronological per user."""
    rows = dataset.split_items(split)
    users = np.repeat(np.arange(len(rows), dtype=np.int64), rows.lengths())
    return np.stack([users, rows.indices.astype(np.int64)], axis=1)


def export_atomic(dataset: PreparedDataset, out: Path, name: str) -> dict:
    """Publishes `<out>/<name>/` (the three .inter files and export.json); returns export.json's content."""
    if dataset.split_method == "users":
        raise SystemExit(f"{dataset.root}: split 'users' keeps held-out users' input items out of training; "
                         "RecBole benchmark files cannot express that (use leave_one_out or ratio)")
    counts = {}
    with building_directory(Path(out) / name) as staging:
        for split in SPLITS:
            pairs = split_pairs(dataset, split)
            counts[split] = len(pairs)
            with open(staging / f"{name}.{split}.inter", "w", encoding="utf-8") as handle:
                handle.write(HEADER)
                np.savetxt(handle, pairs, fmt="%d", delimiter="\t")
        summary = {"name": name, "dataset_dir": str(dataset.root), "split": dataset.split_method,
                   "num_users": dataset.num_users, "num_items": dataset.num_items, "interactions": counts}
        # Written last inside the staging directory: its presence marks a complete export.
        write_json_atomically(staging / EXPORT_FILE, summary)
    return summary


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="run config whose prepared dataset is exported (built if missing)")
    parser.add_argument("--out", required=True, help="RecBole data_path: the files go to <out>/<name>/")
    parser.add_argument("--name", required=True,
                        help="RecBole dataset name; avoid RecBole's own dataset names (e.g. ml-100k), whose "
                             "bundled settings it would load")
    args = parser.parse_args(argv)
    root = dataset_dir(load_experiment(args.config))
    summary = export_atomic(PreparedDataset.open(root), Path(args.out), args.name)
    print(f"export_atomic: {root} -> {Path(args.out) / args.name}: {summary['num_users']} users, "
          f"{summary['num_items']} items, " + ", ".join(f"{split} {n}" for split, n in summary["interactions"].items()))


if __name__ == "__main__":
    main()
