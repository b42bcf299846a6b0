"""The training core: one loop for every model and strategy, checkpoints that resume exactly, stages."""

from tfrs_llmrec.training.checkpoints import CheckpointError, CheckpointStore, best_checkpoint
from tfrs_llmrec.training.distribution import Distribution, StrategyDistribution
from tfrs_llmrec.training.optimizers import (global_batch_size, make_optimizer, set_global_determinism,
                                             set_precision)
from tfrs_llmrec.training.staged import final_stage_dir, fit_stages, stage_dir
from tfrs_llmrec.training.trainer import (Preempted, TerminationRequest, TrainResult, build_variables,
                                          model_weights, train_stage)

__all__ = ["CheckpointError", "CheckpointStore", "best_checkpoint", "Distribution", "Preempted", "StrategyDistribution",
           "TerminationRequest", "TrainResult", "build_variables", "final_stage_dir", "fit_stages",
           "global_batch_size", "make_optimizer", "model_weights", "set_global_determinism", "set_precision",
           "stage_dir", "train_stage"]
