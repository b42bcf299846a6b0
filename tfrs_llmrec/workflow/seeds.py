"""One experiment over several seeds: the runs' metrics as mean and standard deviation.

`llmrec run CONFIG --seeds N` runs the config N times as `<name>-seed<S>` for S = seed, seed + 1,
..., and writes `<output_dir>/<name>-<N>seeds/metrics.json`. Only training depends on the seed:
the prepared dataset and the semantic features are keyed by their own configs, so every seed
reads the same data and the spread is the model's (initialisation, data order, sampled
negatives). The CTR rankers' samples are the exception: their negatives are drawn with the seed.

The aggregate keeps the shape of one run's metrics.json, so the table scripts read either:
`models.<model>.summary` holds the means of every number of the per-seed summaries,
`models.<model>.std` the sample standard deviations (ddof 1), and `per_seed` the runs' own values.
A ranker's retrieval-then-ranking cascade, where every run has one, is `models.<model>.cascade`
(means; each seed's ranker may rerank its own retriever run) with `cascade_std`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np

from tfrs_llmrec.atomic_files import write_json_atomically
from tfrs_llmrec.config import ExperimentConfig, to_dict
from tfrs_llmrec.training.run_dir import CONFIG_FILE, METRICS_FILE, read_train_result, recorded_config

# What the aggregate keeps of each run's train_result.json.
TRAINING_FIELDS = ("best_epoch", "epochs_completed", "best_value", "seconds")


class MissingRunMetricsError(FileNotFoundError):
    """Some of the run directories asked for hold no metrics.json (unfinished or mistyped)."""


def load_run_metrics(run_dirs: Sequence[Path]) -> List[Dict[str, Any]]:
    """Each run directory's metrics.json (a run's or a seed aggregate's), in order; one error naming
    every directory without one, before any is read."""
    missing = [str(run_dir) for run_dir in run_dirs if not (Path(run_dir) / METRICS_FILE).is_file()]
    if missing:
        raise MissingRunMetricsError(f"no {METRICS_FILE} in {', '.join(missing)}")
    return [json.loads((Path(run_dir) / METRICS_FILE).read_text(encoding="utf-8")) for run_dir in run_dirs]


def seed_run_name(name: str, seed: int) -> str:
    return f"{name}-seed{seed}"


def aggregate_dir_name(name: str, num_seeds: int) -> str:
    return f"{name}-{num_seeds}seeds"


def seeds_of(config: ExperimentConfig, num_seeds: int) -> List[int]:
    return [config.seed + offset for offset in range(num_seeds)]


def run_is_complete(config: ExperimentConfig, run_dir: Path) -> bool:
    """Whether `run_dir` holds a finished run of exactly `config` (its metrics written after its
    config was recorded; a key added since counts at its default), so a rerun of the whole seed set
    can skip it."""
    recorded, metrics = run_dir / CONFIG_FILE, run_dir / METRICS_FILE
    if not (recorded.is_file() and metrics.is_file()):
        return False
    return (recorded_config(run_dir) == to_dict(config)
            and metrics.stat().st_mtime >= recorded.stat().st_mtime)


def mean_and_std(values: Sequence[Any]):
    """(mean, sample std) of numbers, recursing into dicts with the same keys and lists of the same
    length. A value that is not a number (a label such as the bucket metric, a flag) is kept when
    every run has the same one; None where the runs disagree."""
    first = values[0]
    if all(isinstance(value, dict) for value in values):
        keys = [key for key in first if all(key in value for value in values)]
        pairs = {key: mean_and_std([value[key] for value in values]) for key in keys}
        return {key: pair[0] for key, pair in pairs.items()}, {key: pair[1] for key, pair in pairs.items()}
    if all(isinstance(value, list) and len(value) == len(first) for value in values):
        pairs = [mean_and_std([value[index] for value in values]) for index in range(len(first))]
        return [pair[0] for pair in pairs], [pair[1] for pair in pairs]
    if all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values):
        array = np.asarray(values, dtype=np.float64)
        std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
        return float(array.mean()), std
    if all(value == first for value in values):
        return first, None
    return None, None


def buckets_over_seeds(per_seed: Sequence[Sequence[float]]):
    """(per-bucket means, mean, sample std) over seeds of a value reported per item-popularity
    bucket (a gate's weight): the last two are of the least popular bucket's value minus the most
    popular's, taken within each seed."""
    means, _ = mean_and_std([list(buckets) for buckets in per_seed])
    drop, drop_std = mean_and_std([buckets[0] - buckets[-1] for buckets in per_seed])
    return means, drop, drop_std


def aggregate_runs(run_dirs: Sequence[Path], seeds: Sequence[int], name: str) -> Dict[str, Any]:
    """The aggregate of finished runs (one per seed, same split and models)."""
    runs = load_run_metrics(run_dirs)
    splits = {run["split"] for run in runs}
    if len(splits) != 1:
        raise ValueError(f"the runs evaluated different splits ({sorted(splits)}): {list(map(str, run_dirs))}")
    models: Dict[str, Any] = {}
    for model in runs[0]["models"]:
        results = [run["models"][model] for run in runs if model in run["models"]]
        if len(results) != len(runs):
            raise ValueError(f"model {model} is missing from some of {list(map(str, run_dirs))}")
        mean, std = mean_and_std([result["summary"] for result in results])
        models[model] = {"summary": mean, "std": std, "per_seed": [result["summary"] for result in results],
                         "seconds": float(np.mean([result["seconds"] for result in results]))}
        cascades = [result.get("cascade") for result in results]
        if any(cascade is not None for cascade in cascades):
            if any(cascade is None for cascade in cascades):
                raise ValueError(f"model {model} has a cascade in only some of {list(map(str, run_dirs))}")
            models[model]["cascade"], models[model]["cascade_std"] = mean_and_std(cascades)
    training = {}
    for run_dir in run_dirs:
        result = read_train_result(run_dir)
        for key in TRAINING_FIELDS:
            if key in result and not (isinstance(result[key], float) and math.isinf(result[key])):
                training.setdefault(key, []).append(result[key])
    return {"experiment": name, "split": splits.pop(), "dataset": runs[0].get("dataset"), "seeds": list(seeds),
            "runs": [str(run_dir) for run_dir in run_dirs], "std": "sample standard deviation (ddof 1)",
            "training": training, "models": models}


def write_aggregate(payload: Dict[str, Any], out_dir: Path) -> Path:
    """`aggregate_runs`' payload as `<out_dir>/metrics.json` (written atomically)."""
    path = Path(out_dir) / METRICS_FILE
    write_json_atomically(path, payload)
    return path
