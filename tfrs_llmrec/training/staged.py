"""Multi-stage training (MotiR): each stage freezes part of the model, gets a fresh optimizer and
its own checkpoints, and starts from the previous stage's best weights.

A stage is a `train_stage` run in `<checkpoint_root>/<n>-<stage name>/`. Rerunning after a
crash replays the stages in order: a finished stage trains no further and only restores its best
weights, the interrupted stage resumes from its latest checkpoint, the later ones start fresh.
A one-stage model is the same thing with one stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from tfrs_llmrec.data.epochs import TrainingEpochs
from tfrs_llmrec.models.base import StagePlan, TrainableModel
from tfrs_llmrec.training.distribution import Distribution
from tfrs_llmrec.training.trainer import TerminationRequest, TrainResult, build_variables, train_stage

RankingMonitor = Callable[[TrainableModel], Dict[str, float]]


def stage_dir(checkpoint_root: Path, position: int, stage: str) -> Path:
    return Path(checkpoint_root) / f"{position}-{stage}"


def final_stage_dir(checkpoint_root: Path, plans: Sequence[StagePlan]) -> Path:
    """Where the model's final weights live: its last stage's checkpoints."""
    return stage_dir(checkpoint_root, len(plans), plans[-1].name)


def fit_stages(model: TrainableModel, plans: Sequence[StagePlan], epochs: TrainingEpochs,
               checkpoint_root: Path, distribution: Distribution, ranking_metrics: RankingMonitor,
               termination: Optional[TerminationRequest] = None) -> Dict[str, TrainResult]:
    """Runs `plans` in order; returns each stage's TrainResult.

    `ranking_metrics(model)` gives the validation ranking metrics (recall@K, hr@K, ...): the
    monitor of stages without their own, and the source of a stage's `ranking_extras`.
    """
    with distribution.scope():
        build_variables(model, epochs.sample_batch(), [plan.name for plan in plans])
    results: Dict[str, TrainResult] = {}
    for position, plan in enumerate(plans, start=1):
        model.set_stage(plan.name)
        monitor = plan.monitor or (lambda m, key=plan.train.monitor: ranking_metrics(m)[key])
        extras = None
        if plan.ranking_extras:
            def extras(m, prefix=plan.ranking_extras):
                return {f"{prefix}_{key}": value for key, value in ranking_metrics(m).items()
                        if key.startswith("hr@")}
        results[plan.name] = train_stage(
            model, epochs, plan.train, stage_dir(checkpoint_root, position, plan.name), distribution, monitor,
            monitor_name=plan.monitor_name, stop_at=plan.stop_at, extra_metrics_fn=extras, termination=termination)
    return results
