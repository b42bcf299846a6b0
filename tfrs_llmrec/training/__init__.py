"""Fit loops: optimizers, checkpoints that resume, early stopping on a validation metric."""

from tfrs_llmrec.training.fit import TrainResult, fit_with_validation, make_optimizer, set_global_determinism

__all__ = ["TrainResult", "fit_with_validation", "make_optimizer", "set_global_determinism"]
