"""The training loop every model trains through, under any `Distribution`.

Per step: the distribution's step function (the model's `train_step` on every replica, gradients
reduced by the strategy). Every `train.checkpoint_every_steps` steps, at every epoch end and when
SIGTERM arrives, the chief publishes a checkpoint with the state that goes with it (see
`checkpoints`). A rerun restores the newest one, broadcasts it from the chief, and continues at
the same step of the same epoch: the data order is a function of (seed, epoch) and sampled
negatives a function of the optimizer step, so the continued run computes exactly what the
uninterrupted one would have.

At each epoch end the chief scores the model with `monitor_fn`, keeps the best weights apart
(`best/`), and decides about early stopping; every process adopts its decision. At the end the
best weights are loaded.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfrs_llmrec.config.schema import TrainConfig
from tfrs_llmrec.data.epochs import TrainingEpochs
from tfrs_llmrec.models.base import TrainableModel
from tfrs_llmrec.training.checkpoints import CheckpointStore, restore
from tfrs_llmrec.training.distribution import Distribution
from tfrs_llmrec.training.optimizers import make_optimizer

log = logging.getLogger(__name__)


class Preempted(RuntimeError):
    """SIGTERM arrived; a checkpoint of the last finished step was published."""

    exit_code = 128 + signal.SIGTERM


@dataclass
class TrainResult:
    history: Dict[str, List[float]] = field(default_factory=dict)
    epochs_completed: int = 0
    best_epoch: int = 0
    best_value: float = -math.inf
    stopped_early: bool = False
    # Steps already done when this invocation started (0: a fresh start).
    resumed_from_step: int = 0
    global_steps: int = 0
    # Wall time of the training so far: the earlier invocations' up to their last checkpoint (what a
    # kill lost is redone and counted once), so a resumed or re-evaluated run keeps its cost.
    seconds: float = 0.0
    # Of this invocation's steps.
    examples_per_second: float = 0.0


class TerminationRequest:
    """Turns SIGTERM (what Kubernetes sends before it kills a pod) into a flag the loop checks
    after each step, so the checkpoint is taken between steps, never in the middle of one."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False


def build_variables(model: TrainableModel, sample_batch, stages: List[str]) -> None:
    """Creates every variable (each stage may touch other layers) before any restore or broadcast."""
    for stage in stages:
        model.set_stage(stage)
        model.compute_loss(sample_batch)


def _optimizer_variables(optimizer) -> List[tf.Variable]:
    return list(optimizer.variables())


def train_stage(model: TrainableModel, epochs: TrainingEpochs, config: TrainConfig, directory: Path,
                distribution: Distribution, monitor_fn: Callable[[TrainableModel], float],
                monitor_name: Optional[str] = None, stop_at: Optional[float] = None,
                extra_metrics_fn: Optional[Callable[[TrainableModel], Dict[str, float]]] = None,
                termination: Optional[TerminationRequest] = None) -> TrainResult:
    """Trains `model` (variables built, stage set) and leaves it holding its best weights.

    `monitor_fn` is called on the chief only; `monitor_name` names what it returns when that is
    not `config.monitor`.
    """
    monitor_name = monitor_name or config.monitor
    directory = Path(directory)
    chief = distribution.is_chief
    steps_per_epoch = epochs.steps_per_epoch
    if steps_per_epoch < 1:
        raise ValueError(f"{epochs.num_records} training examples make no step of global batch "
                         f"{epochs.global_batch_size}; lower train.batch_size")
    with distribution.scope():
        optimizer = make_optimizer(config, steps_per_epoch * config.epochs, distribution.num_replicas)
        model.compile(optimizer)
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        inner.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    latest = CheckpointStore(directory / "latest", keep=config.keep_checkpoints)
    best = CheckpointStore(directory / "best", keep=1)
    if chief:
        latest.remove_partials()
        best.remove_partials()

    result = TrainResult()
    state = {"epoch": 0, "step_in_epoch": 0, "epoch_loss_sum": 0.0, "wait": 0, "finished": False}
    saved = latest.latest()
    if saved is not None:
        restore(checkpoint, saved)
        state = saved.state["loop"]
        result = TrainResult(**saved.state["result"])
        result.resumed_from_step = saved.step
        log.info("resuming %s from step %d (epoch %d, step %d of %d)", directory, saved.step, state["epoch"] + 1,
                 state["step_in_epoch"], steps_per_epoch)
    # Identical starting weights everywhere (initialisers differ per process; a restore may too).
    distribution.broadcast_variables(model.variables + _optimizer_variables(optimizer))

    earlier_seconds = result.seconds
    started = time.perf_counter()

    def publish(store: CheckpointStore, target: tf.train.Checkpoint) -> None:
        if chief:
            result.seconds = earlier_seconds + time.perf_counter() - started
            store.save(target, int(optimizer.iterations.numpy()), {"loop": dict(state), "result": asdict(result)})

    steps_run = 0
    termination = termination or TerminationRequest()
    step = distribution.step_function(model)
    show_progress = chief and sys.stderr.isatty()
    while not state["finished"] and state["epoch"] < config.epochs:
        epoch = state["epoch"]
        batches = iter(distribution.epoch_batches(epochs, epoch, state["step_in_epoch"]))
        progress = tqdm(total=steps_per_epoch, initial=state["step_in_epoch"], disable=not show_progress,
                        desc=f"{directory.name} epoch {epoch + 1}/{config.epochs}", unit="step", leave=False)
        while state["step_in_epoch"] < steps_per_epoch:
            loss, stop = step(next(batches), tf.constant(float(termination.requested)))
            state["step_in_epoch"] += 1
            state["epoch_loss_sum"] += float(loss)
            steps_run += 1
            progress.update(1)
            if float(stop) > 0:
                progress.close()
                publish(latest, checkpoint)
                raise Preempted(f"SIGTERM: stopped after step {int(optimizer.iterations.numpy())}; checkpoint in "
                                f"{latest.root}; rerun the same command to resume")
            every = config.checkpoint_every_steps
            if every and int(optimizer.iterations.numpy()) % every == 0:
                publish(latest, checkpoint)
        progress.close()

        mean_loss = state["epoch_loss_sum"] / steps_per_epoch
        value, extras = (float(monitor_fn(model)), extra_metrics_fn(model) if extra_metrics_fn else {}) if chief \
            else (0.0, {})
        # The chief decides; every process adopts its decision, so all stop at the same epoch.
        improved = chief and value > result.best_value
        wait = 0 if improved else state["wait"] + 1
        stop_now = chief and ((stop_at is not None and value >= stop_at) or
                              (wait > 0 and wait >= config.early_stopping_patience))
        value, improved, stop_now = distribution.agree([value, float(improved), float(stop_now)])
        improved, stop_now = bool(improved), bool(stop_now)

        result.history.setdefault("loss", []).append(mean_loss)
        result.history.setdefault(f"val_{monitor_name}", []).append(float(value))
        for key, extra in extras.items():
            result.history.setdefault(f"val_{key}", []).append(float(extra))
        result.epochs_completed = epoch + 1
        if improved:
            result.best_value, result.best_epoch = float(value), epoch + 1
        result.stopped_early = stop_now
        state.update(epoch=epoch + 1, step_in_epoch=0, epoch_loss_sum=0.0, wait=0 if improved else state["wait"] + 1,
                     finished=stop_now)
        if improved:
            publish(best, tf.train.Checkpoint(model=model))
        publish(latest, checkpoint)
        if chief:
            log.info("epoch %d: loss %.4f, val %s %.4f (best %.4f at epoch %d)%s", epoch + 1, mean_loss, monitor_name,
                     value, result.best_value, result.best_epoch,
                     "".join(f", {key} {extra:.4f}" for key, extra in extras.items()))

    distribution.barrier()  # the chief's last checkpoint is on disk before anyone reads it
    best_saved = best.latest()
    if best_saved is not None:
        restore(tf.train.Checkpoint(model=model), best_saved, partial=True)
    result.global_steps = int(optimizer.iterations.numpy())
    seconds_here = time.perf_counter() - started
    result.seconds = earlier_seconds + seconds_here
    if steps_run and seconds_here > 0:
        result.examples_per_second = steps_run * epochs.global_batch_size / seconds_here
    return result


def model_weights(model: tf.keras.Model) -> List[np.ndarray]:
    """Every variable's value, in the model's (deterministic) variable order: what resume and
    distribution checks compare bit for bit."""
    return [variable.numpy() for variable in model.variables]
