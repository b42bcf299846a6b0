"""Fit loops: optimizers, checkpoints that resume, early stopping on a validation metric, stages."""

from tfrs_llmrec.training.fit import TrainResult, fit_with_validation, make_optimizer, set_global_determinism
from tfrs_llmrec.training.staged import Stage, fit_stages, stage_dir

__all__ = ["Stage", "TrainResult", "fit_stages", "fit_with_validation", "make_optimizer", "set_global_determinism",
           "stage_dir"]
