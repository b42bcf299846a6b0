"""Evaluation metrics, one file per family: full-ranking (ranking.py) and AUC/GAUC (auc.py)."""

from tfrs_llmrec.metrics.auc import AUCAccumulator, auc, gauc, per_user_auc
from tfrs_llmrec.metrics.log_loss import log_loss
from tfrs_llmrec.metrics.ranking import (
    batched_target_ranks,
    metric_names,
    metrics_from_csr_ranks,
    metrics_from_ranks,
    normalize_ks,
    ranks_from_counts,
    ranks_from_scores,
    score_targets_against_catalogue,
)

__all__ = [
    "AUCAccumulator",
    "auc",
    "batched_target_ranks",
    "gauc",
    "log_loss",
    "metric_names",
    "metrics_from_csr_ranks",
    "metrics_from_ranks",
    "normalize_ks",
    "per_user_auc",
    "ranks_from_counts",
    "ranks_from_scores",
    "score_targets_against_catalogue",
]
