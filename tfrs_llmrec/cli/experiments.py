"""Experiments made of several runs: `llmrec run CONFIG --seeds N` and `llmrec tune CONFIG`.

Each run is a child `llmrec run` process: a run's memory and TensorFlow state end with it, and a
killed search or seed set resumes where it stopped (finished runs of the same config are
skipped; an unfinished one resumes from its checkpoint, as `llmrec run` does).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from tfrs_llmrec.config import ConfigError, ExperimentConfig, load_experiment
from tfrs_llmrec.config.loader import parse_override
from tfrs_llmrec.workflow import seeds as seed_runs
from tfrs_llmrec.workflow import tuning

log = logging.getLogger("llmrec")

# The strategies whose run is one process this command can start; the others need a launcher.
CHILD_STRATEGIES = ("single", "mirrored")


class ChildRunFailed(RuntimeError):
    """A child `llmrec run` exited with an error (it printed its own message)."""


def child_command(config_path: Path, overrides: Sequence[str], beam_options: Sequence[str], log_level: str,
                  restart: bool) -> List[str]:
    command = [sys.executable, "-m", "tfrs_llmrec.cli.main", "--log-level", log_level, "run", str(config_path)]
    for override in overrides:
        command += ["--set", override]
    command += [f"--beam-option={option}" for option in beam_options]
    return command + (["--restart"] if restart else [])


def _run_child(command: List[str], what: str) -> None:
    returncode = subprocess.run(command).returncode
    if returncode != 0:
        raise ChildRunFailed(f"{what}: `llmrec run` exited with status {returncode}; rerun the same command to "
                             "resume (finished runs are kept)")


def _run_unless_complete(config_path: Path, overrides: Sequence[str], beam_options: Sequence[str], log_level: str,
                         restart: bool, what: str) -> Path:
    """The run directory of `config_path` with `overrides`, after a child `llmrec run` made it
    (skipped when it already holds a finished run of exactly that config, unless `restart`)."""
    run_config = load_experiment(config_path, overrides)
    run_dir = Path(run_config.output_dir) / run_config.name
    if not restart and seed_runs.run_is_complete(run_config, run_dir):
        log.info("%s: %s is complete; kept", what, run_dir)
    else:
        log.info("%s: llmrec run -> %s", what, run_dir)
        _run_child(child_command(config_path, overrides, beam_options, log_level, restart), f"{what} ({run_dir})")
    return run_dir


def _check_strategy(config: ExperimentConfig, command: str) -> None:
    if config.train.strategy not in CHILD_STRATEGIES:
        raise ConfigError("<config>", "train.strategy",
                          f"{command} starts one process per run, which {config.train.strategy!r} does not fit; "
                          f"use one of {', '.join(CHILD_STRATEGIES)}, or launch each run yourself")


def run_seeds(config_path: Path, overrides: Sequence[str], config: ExperimentConfig, num_seeds: int,
              beam_options: Sequence[str] = (), log_level: str = "INFO", restart: bool = False) -> Path:
    """Runs the config once per seed and writes the aggregate metrics.json; returns its path."""
    _check_strategy(config, "--seeds")
    seeds = seed_runs.seeds_of(config, num_seeds)
    run_dirs = [_run_unless_complete(config_path,
                                     [*overrides, f"seed={seed}", f"name={seed_runs.seed_run_name(config.name, seed)}"],
                                     beam_options, log_level, restart, f"seed {seed}")
                for seed in seeds]
    out_dir = Path(config.output_dir) / seed_runs.aggregate_dir_name(config.name, num_seeds)
    aggregate = seed_runs.aggregate_runs(run_dirs, seeds, config.name)
    path = seed_runs.write_aggregate(aggregate, out_dir)
    model = aggregate["models"].get(config.model.name)
    if model is not None and config.train.monitor in model["summary"]["overall"]:
        metric = config.train.monitor
        print(f"{config.name}: {metric} {model['summary']['overall'][metric]:.4f} ± "
              f"{model['std']['overall'][metric]:.4f} over seeds {', '.join(map(str, seeds))}")
    print(f"llmrec run --seeds {num_seeds}: aggregate in {path}")
    return path


def tune(config_path: Path, overrides: Sequence[str], config: ExperimentConfig, output: Optional[Path] = None,
         beam_options: Sequence[str] = (), log_level: str = "INFO", restart: bool = False) -> Path:
    """Runs the config's search and writes its best config; returns the best config's path."""
    _check_strategy(config, "llmrec tune")
    tuning.check_space(config, lambda extra: load_experiment(config_path, [*overrides, *extra]))
    trials = tuning.draw_trials(config)
    log.info("tune %s: %d trials of %s, selected on validation %s", config.name, len(trials),
             ", ".join(dimension.key for dimension in config.tune.space), config.train.monitor)
    outcomes = []
    for trial in trials:
        run_dir = _run_unless_complete(config_path, [*overrides, *tuning.trial_overrides(config, trial)], beam_options,
                                       log_level, restart, f"trial {trial.index} {trial.values}")
        outcome = tuning.trial_outcome(config, trial, run_dir)
        log.info("trial %d: validation %s %.4f", trial.index, outcome["metric"], outcome["value"])
        outcomes.append(outcome)
    best = tuning.best_outcome(outcomes)
    output = Path(output) if output is not None else tuning.default_output(config)
    text = tuning.best_config_text(config_path, output, config.name, best, outcomes,
                                   tuning.fixed_values(overrides, parse_override))
    tuning.write_search(Path(config.output_dir) / tuning.search_dir_name(config.name), outcomes, best, output, text)
    print(f"llmrec tune: best of {len(outcomes)} trials: {best['values']} (validation {best['metric']} "
          f"{best['value']:.4f}); config written to {output}")
    return output
