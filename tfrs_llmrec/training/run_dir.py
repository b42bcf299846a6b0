"""A run directory belongs to one training config: a rerun under the same name with another one
must not resume the old checkpoints silently.

The recorded config is compared as this code resolves it: a key added since the run was recorded
takes its default, so adding a key whose default keeps the old behaviour does not orphan the runs
trained before it. A changed default still counts, since the recorded config spells every value.

What identifies the trained model is everything but `eval`, `export`, `pipeline`, `cascade` and
`tune`, which only change what is computed from it or around it (and are recomputed on every run),
and `name`, which only says where the run lives: a search's winning trial copied under the tuned
config's seed-run name is that seed's training, and is claimed as such.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict, List

from tfrs_llmrec.atomic_files import write_atomically
from tfrs_llmrec.config import ConfigError, ExperimentConfig, config_hash, dump_yaml, load_experiment, to_dict
from tfrs_llmrec.config.loader import read_yaml

CONFIG_FILE = "config.yaml"
HASH_FILE = "training-config.sha256"
TRAIN_RESULT_FILE = "train_result.json"
METRICS_FILE = "metrics.json"
TIMINGS_FILE = "timings.json"
NOT_TRAINING_KEYS = ("name", "eval", "export", "pipeline", "cascade", "tune")
# What a fresh start removes: everything a run writes (the prepared data lives elsewhere).
RUN_OUTPUTS = ("checkpoints", "export", TRAIN_RESULT_FILE, METRICS_FILE, "report.html", TIMINGS_FILE,
               CONFIG_FILE, HASH_FILE)


def read_train_result(run_dir) -> Dict[str, Any]:
    """The run's training summary (best epoch, seconds, history); empty for a run that was not
    trained here (an untrained model, or evaluation only)."""
    path = Path(run_dir) / TRAIN_RESULT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


class RunConfigMismatch(RuntimeError):
    """The run directory holds another config's run."""


def _flatten(value: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(value, dict):
        flat: Dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def differing_keys(old: dict, new: dict) -> List[str]:
    """Dotted keys whose values differ (or exist on one side only), each with both values."""
    before, after = _flatten(old), _flatten(new)
    return [f"{key}: {before.get(key, '<absent>')!r} -> {after.get(key, '<absent>')!r}"
            for key in sorted(set(before) | set(after)) if before.get(key, "<absent>") != after.get(key, "<absent>")]


def training_identity(config: dict) -> dict:
    """The sections of a resolved config (as a dict) that determine the trained model."""
    return {key: value for key, value in config.items() if key not in NOT_TRAINING_KEYS}


def recorded_config(run_dir) -> dict:
    """The config recorded in `run_dir` (as a dict), resolved by this code's config classes; as
    written when it no longer parses (a key removed since), so that the differences can be named;
    empty when none is recorded."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        return to_dict(load_experiment(path))
    except ConfigError:
        return read_yaml(path.read_text(encoding="utf-8")) or {}


def claim_run_dir(config: ExperimentConfig, run_dir: Path, restart: bool = False) -> None:
    """Records `config` as the run directory's config. Raises RunConfigMismatch when the directory
    already holds a run of a different config, unless `restart`, which clears the old run first."""
    run_dir = Path(run_dir)
    identity = training_identity(to_dict(config))
    digest = config_hash(identity)
    recorded = run_dir / HASH_FILE
    if restart:
        for name in RUN_OUTPUTS:
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    elif recorded.is_file() and recorded.read_text(encoding="utf-8").strip() != digest:
        old = training_identity(recorded_config(run_dir))
        if config_hash(old) != digest:
            changes = differing_keys(old, identity)
            raise RunConfigMismatch(
                f"{run_dir} holds a run of another config ({len(changes)} key(s) differ: {'; '.join(changes)}); "
                "rerun with --restart to discard it, or give this config another name")
    text = dump_yaml(config)
    write_atomically(run_dir / CONFIG_FILE, lambda handle: handle.write(text))
    write_atomically(run_dir / HASH_FILE, lambda handle: handle.write(digest + "\n"))
