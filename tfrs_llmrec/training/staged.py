"""Multi-stage training (MotiR): each stage freezes part of the model, gets a fresh optimizer and
its own checkpoints, and starts from the previous stage's best weights.

A stage is a `fit_with_validation` run in `<checkpoint_root>/<n>-<stage name>/`. Rerunning after a
crash replays the stages in order: a finished stage trains no further and only restores its best
weights, the interrupted stage resumes from its latest checkpoint, the later ones start fresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Protocol, Sequence

import tensorflow as tf

from tfrs_llmrec.config.schema import TrainConfig
from tfrs_llmrec.training.fit import TrainResult, fit_with_validation, make_optimizer


class StagedModel(Protocol):
    def set_stage(self, stage: str) -> None:
        """Sets which variables train in `stage`."""


@dataclass
class Stage:
    name: str
    train: TrainConfig
    monitor_fn: Callable[[tf.keras.Model], float]
    # Set when monitor_fn does not return train.monitor (e.g. a mean cosine).
    monitor_name: Optional[str] = None
    stop_at: Optional[float] = None
    extra_metrics_fn: Optional[Callable[[tf.keras.Model], Dict[str, float]]] = None


def stage_dir(checkpoint_root: Path, position: int, stage: str) -> Path:
    return Path(checkpoint_root) / f"{position}-{stage}"


def fit_stages(model: StagedModel, stages: Sequence[Stage], train_data: tf.data.Dataset, steps_per_epoch: int,
               checkpoint_root: Path) -> Dict[str, TrainResult]:
    """Runs `stages` in order on `model` (a Keras model with `set_stage`); returns each stage's TrainResult.

    `train_data` is one epoch; `steps_per_epoch` is its length, for the learning-rate schedules.
    """
    results: Dict[str, TrainResult] = {}
    for position, stage in enumerate(stages, start=1):
        model.set_stage(stage.name)
        model.compile(make_optimizer(stage.train, steps_per_epoch * stage.train.epochs))
        results[stage.name] = fit_with_validation(
            model, train_data, stage.train, stage_dir(checkpoint_root, position, stage.name), stage.monitor_fn,
            stop_at=stage.stop_at, extra_metrics_fn=stage.extra_metrics_fn,
            monitor_name=stage.monitor_name)
    return results
