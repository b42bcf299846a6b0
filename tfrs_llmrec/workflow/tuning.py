"""`llmrec tune`: the same search protocol for every model.

A config declares its search space under `tune.space` (dotted keys and candidate values); the
budget `tune.trials` is set once in base.yaml. A search draws `trials` distinct combinations of
the grid with `tune.seed`, trains each as its own run `<name>-tune/trial-<i>` evaluated on the
validation split (whatever `eval.split` says: the test split is never looked at), and selects
the trial with the best validation `train.monitor` over all validation users. The result is a
config file that includes the searched config and sets the chosen values, plus
`<output_dir>/<name>-tune/trials.json` with every trial.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import yaml

from tfrs_llmrec.atomic_files import write_atomically, write_json_atomically
from tfrs_llmrec.config import ConfigError, ExperimentConfig
from tfrs_llmrec.training.run_dir import read_train_result
from tfrs_llmrec.workflow.seeds import load_run_metrics

TRIALS_FILE = "trials.json"


@dataclass(frozen=True)
class Trial:
    index: int
    values: Dict[str, Any]

    def overrides(self) -> List[str]:
        """`--set` arguments for this trial's values (YAML flow style keeps their types)."""
        return [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
                for key, value in self.values.items()]


def search_dir_name(name: str) -> str:
    return f"{name}-tune"


def trial_run_name(name: str, index: int) -> str:
    return f"{search_dir_name(name)}/trial-{index:02d}"


def draw_trials(config: ExperimentConfig) -> List[Trial]:
    """`tune.trials` distinct combinations of the grid (the whole grid when it is smaller), drawn
    with `tune.seed`, in the order they will run."""
    keys = [dimension.key for dimension in config.tune.space]
    grid = list(itertools.product(*(dimension.values for dimension in config.tune.space)))
    count = min(config.tune.trials, len(grid))
    chosen = np.random.default_rng(config.tune.seed).choice(len(grid), size=count, replace=False)
    return [Trial(index, dict(zip(keys, grid[row]))) for index, row in enumerate(chosen.tolist())]


def trial_overrides(config: ExperimentConfig, trial: Trial) -> List[str]:
    """What turns the searched config into this trial's run: its values, its own run name, the
    validation split, and no export (nothing is served from a trial)."""
    return [*trial.overrides(), f"name={trial_run_name(config.name, trial.index)}", "eval.split=valid",
            "export.enabled=false"]


def trial_outcome(config: ExperimentConfig, trial: Trial, run_dir: Path) -> Dict[str, Any]:
    """The trial's validation `train.monitor` over all validation users (its metrics.json) and its
    training summary."""
    metrics = load_run_metrics([run_dir])[0]
    if metrics["split"] != "valid":
        raise ValueError(f"{run_dir}: evaluated on {metrics['split']!r}; a trial is selected on 'valid' only")
    model = config.model.name
    value = metrics["models"][model]["summary"]["overall"][config.train.monitor]
    training = read_train_result(run_dir)
    return {"trial": trial.index, "values": trial.values, "run": str(run_dir), "split": "valid",
            "metric": config.train.monitor, "value": float(value), "best_epoch": training.get("best_epoch"),
            "epochs_completed": training.get("epochs_completed"), "seconds": training.get("seconds")}


def best_outcome(outcomes: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """The highest validation value; the earliest trial wins a tie."""
    return max(outcomes, key=lambda outcome: (outcome["value"], -outcome["trial"]))


def _nested(values: Dict[str, Any]) -> Dict[str, Any]:
    tree: Dict[str, Any] = {}
    for key, value in values.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def best_config_text(config_path: Path, output: Path, name: str, best: Dict[str, Any], outcomes: Sequence[dict],
                     fixed: Dict[str, Any]) -> str:
    """A config that includes the searched one (by a path relative to `output`) and sets the
    chosen values (plus the command line's `--set` values, `fixed`) under a new run name."""
    include = os.path.relpath(Path(config_path).resolve(), Path(output).resolve().parent)
    lines = [f"# Tuned by `llmrec tune {config_path}`: {len(outcomes)} trials, selected on validation "
             f"{best['metric']} (all validation users; the test split was not used).",
             f"# Best: trial {best['trial']}, {best['metric']} {best['value']:.4f}. Every trial:"]
    for outcome in outcomes:
        lines.append(f"#   trial {outcome['trial']}: {outcome['value']:.4f} "
                     + ", ".join(f"{key}={value}" for key, value in outcome["values"].items()))
    body = {"include": include, "name": f"{name}-tuned", **_nested({**fixed, **best["values"]})}
    return "\n".join(lines) + "\n" + yaml.safe_dump(body, sort_keys=False)


def write_search(search_dir: Path, outcomes: Sequence[Dict[str, Any]], best: Dict[str, Any], output: Path,
                 text: str) -> None:
    write_json_atomically(Path(search_dir) / TRIALS_FILE, {"trials": list(outcomes), "best": best,
                                                           "best_config": str(output)})
    write_atomically(output, lambda handle: handle.write(text))


def fixed_values(overrides: Sequence[str], parse) -> Dict[str, Any]:
    """The command line's `--set KEY=VALUE` pairs as {dotted key: value} (`parse` is the loader's)."""
    values: Dict[str, Any] = {}
    for override in overrides:
        path, value = parse(override)
        if path[0] not in ("name", "tune"):  # the tuned config gets its own name; the search is done
            values[".".join(path)] = value
    return values


def default_output(config: ExperimentConfig) -> Path:
    return Path(config.output_dir) / search_dir_name(config.name) / "best.yaml"


def check_space(config: ExperimentConfig, load) -> None:
    """Loads every candidate value into a config (`load(overrides)`, the loader), so a bad key or
    value fails with the loader's error, naming it, before any trial trains."""
    if not config.tune.space:
        raise ConfigError("<config>", "tune.space", "empty; declare the keys and candidate values to search")
    for dimension in config.tune.space:
        for value in dimension.values:
            load(Trial(0, {dimension.key: value}).overrides())
