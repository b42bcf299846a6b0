"""Clustering: Affinity Propagation and EIMF's typical-user (exemplar) selection."""

from tfrs_llmrec.clustering.affinity_propagation import (
    APResult,
    TypicalUsers,
    affinity_propagation,
    select_typical_users,
)

__all__ = ["APResult", "TypicalUsers", "affinity_propagation", "select_typical_users"]
