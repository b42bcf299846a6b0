"""A run directory belongs to one resolved config: a rerun under the same name with another config
must not resume the old checkpoints silently."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Dict, List

import yaml

from tfrs_llmrec.atomic_files import write_atomically
from tfrs_llmrec.config import ExperimentConfig, config_hash, dump_yaml, to_dict

CONFIG_FILE = "config.yaml"
HASH_FILE = "config.sha256"
# What a fresh start removes: everything a run writes (the prepared data lives elsewhere).
RUN_OUTPUTS = ("checkpoints", "export", "train_result.json", "metrics.json", "report.html", "timings.json",
               CONFIG_FILE, HASH_FILE)


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


def claim_run_dir(config: ExperimentConfig, run_dir: Path, restart: bool = False) -> None:
    """Records `config` as the run directory's config. Raises RunConfigMismatch when the directory
    already holds a run of a different config, unless `restart`, which clears the old run first."""
    run_dir = Path(run_dir)
    digest = config_hash(config)
    recorded = run_dir / HASH_FILE
    if restart:
        for name in RUN_OUTPUTS:
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    elif recorded.is_file() and recorded.read_text(encoding="utf-8").strip() != digest:
        old_path = run_dir / CONFIG_FILE
        old = yaml.safe_load(old_path.read_text(encoding="utf-8")) if old_path.is_file() else {}
        changes = differing_keys(old or {}, to_dict(config))
        raise RunConfigMismatch(
            f"{run_dir} holds a run of another config ({len(changes)} key(s) differ: {'; '.join(changes)}); "
            "rerun with --restart to discard it, or give this config another name")
    text = dump_yaml(config)
    write_atomically(run_dir / CONFIG_FILE, lambda handle: handle.write(text))
    write_atomically(run_dir / HASH_FILE, lambda handle: handle.write(digest + "\n"))
