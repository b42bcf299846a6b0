"""Keras `fit` with per-epoch checkpoints, resume, and early stopping on a validation metric.

Each epoch ends by scoring the model with `monitor_fn` (a full-ranking metric on validation
users), saving a checkpoint of the model and optimizer, saving the best weights separately, and
writing `train_state.json` atomically. A rerun after a crash restores the latest checkpoint and
the monitor's state and continues from the next epoch; at the end the best weights are loaded.
Training also stops once the monitor reaches `stop_at` (e.g. MotiR's alignment threshold), and
`extra_metrics_fn` adds per-epoch curves to the history without steering training.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import tensorflow as tf

from tfrs_llmrec.atomic_files import write_atomically
from tfrs_llmrec.config.schema import TrainConfig

log = logging.getLogger(__name__)

STATE_FILE = "train_state.json"


@dataclass
class TrainResult:
    history: Dict[str, List[float]] = field(default_factory=dict)
    epochs_completed: int = 0
    best_epoch: int = 0
    best_value: float = -math.inf
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    # Wall time of this invocation only (a resumed run does not count the earlier ones).
    seconds: float = 0.0


def set_global_determinism(seed: int) -> None:
    """Same config, same numbers: seeds Python, NumPy and TF, and asks TF for deterministic ops."""
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def make_optimizer(config: TrainConfig, total_steps: int) -> tf.keras.optimizers.Optimizer:
    learning_rate = config.learning_rate
    if config.final_learning_rate is not None and total_steps > 0 and config.learning_rate > 0:
        # Per-step exponential decay that reaches final_learning_rate at the last step.
        rate = (config.final_learning_rate / config.learning_rate) ** (1.0 / total_steps)
        learning_rate = tf.keras.optimizers.schedules.ExponentialDecay(config.learning_rate, 1, rate)
    if config.optimizer == "adagrad":
        return tf.keras.optimizers.Adagrad(learning_rate)
    return tf.keras.optimizers.Adam(learning_rate)


class _EpochEnd(tf.keras.callbacks.Callback):
    def __init__(self, monitor_name: str, monitor_fn: Callable[[tf.keras.Model], float], patience: int,
                 checkpoint_dir: Path, result: TrainResult, latest: tf.train.CheckpointManager,
                 best: tf.train.CheckpointManager, stop_at: Optional[float] = None,
                 extra_metrics_fn: Optional[Callable[[tf.keras.Model], Dict[str, float]]] = None):
        super().__init__()
        self.monitor_name = monitor_name
        self.monitor_fn = monitor_fn
        self.stop_at = stop_at
        self.extra_metrics_fn = extra_metrics_fn
        self.patience = patience
        self.checkpoint_dir = checkpoint_dir
        self.result = result
        self.latest = latest
        self.best = best
        self.wait = 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        value = float(self.monitor_fn(self.model))
        logs[f"val_{self.monitor_name}"] = value
        for key in ("loss",):
            if key in logs:
                self.result.history.setdefault(key, []).append(float(logs[key]))
        self.result.history.setdefault(f"val_{self.monitor_name}", []).append(value)
        extras = self.extra_metrics_fn(self.model) if self.extra_metrics_fn is not None else {}
        for key, extra in extras.items():
            self.result.history.setdefault(f"val_{key}", []).append(float(extra))
        self.result.epochs_completed = epoch + 1
        if value > self.result.best_value:
            self.result.best_value, self.result.best_epoch, self.wait = value, epoch + 1, 0
            self.best.save(checkpoint_number=epoch + 1)
        else:
            self.wait += 1
        self.latest.save(checkpoint_number=epoch + 1)
        state = {**asdict(self.result), "wait": self.wait}
        # Plain json.dump, not write_json_atomically: a best value of -inf must survive a resume.
        write_atomically(self.checkpoint_dir / STATE_FILE, lambda handle: json.dump(state, handle, indent=2))
        log.info("epoch %d: loss %.4f, val %s %.4f (best %.4f at epoch %d)%s", epoch + 1, logs.get("loss", math.nan),
                 self.monitor_name, value, self.result.best_value, self.result.best_epoch,
                 "".join(f", {key} {extra:.4f}" for key, extra in extras.items()))
        reached = self.stop_at is not None and value >= self.stop_at
        if reached or (self.wait > 0 and self.wait >= self.patience):
            self.result.stopped_early = True
            self.model.stop_training = True


def fit_with_validation(model: tf.keras.Model, train_data: tf.data.Dataset, config: TrainConfig,
                        checkpoint_dir: Path, monitor_fn: Callable[[tf.keras.Model], float],
                        steps_per_epoch: Optional[int] = None, stop_at: Optional[float] = None,
                        extra_metrics_fn: Optional[Callable[[tf.keras.Model], Dict[str, float]]] = None,
                        monitor_name: Optional[str] = None) -> TrainResult:
    """Trains `model` (already compiled) and leaves it holding its best validation weights.

    `monitor_name` names what `monitor_fn` returns when it is not `config.monitor` (a ranking metric).
    """
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    latest = tf.train.CheckpointManager(checkpoint, str(checkpoint_dir / "latest"), max_to_keep=1)
    best = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(checkpoint_dir / "best"), max_to_keep=1)

    result = TrainResult()
    wait = 0
    state_path = checkpoint_dir / STATE_FILE
    if latest.latest_checkpoint and state_path.is_file():
        state = json.loads(state_path.read_text(encoding="utf-8"))
        wait = state.pop("wait")
        result = TrainResult(**state)
        checkpoint.restore(latest.latest_checkpoint)
        result.resumed_from_epoch = result.epochs_completed
        log.info("resuming from %s (epoch %d)", latest.latest_checkpoint, result.epochs_completed)

    started = time.perf_counter()
    finished = result.stopped_early or result.epochs_completed >= config.epochs
    if not finished:
        on_epoch_end = _EpochEnd(monitor_name or config.monitor, monitor_fn, config.early_stopping_patience, checkpoint_dir,
                                 result, latest, best, stop_at, extra_metrics_fn)
        on_epoch_end.wait = wait
        model.fit(train_data, epochs=config.epochs, initial_epoch=result.epochs_completed,
                  steps_per_epoch=steps_per_epoch, callbacks=[on_epoch_end],
                  verbose=1 if sys.stderr.isatty() else 2)
    if best.latest_checkpoint:
        tf.train.Checkpoint(model=model).restore(best.latest_checkpoint).expect_partial()
    result.seconds = time.perf_counter() - started
    return result
