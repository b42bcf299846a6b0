"""Serving artefacts: query-tower SavedModels and top-K index SavedModels (BruteForce, ScaNN)."""

from tfrs_llmrec.serving.export import check_in_fresh_process, save_index_model, save_query_model
from tfrs_llmrec.serving.indexes import IndexSettings, build_index, top_k_recall

__all__ = ["IndexSettings", "build_index", "check_in_fresh_process", "save_index_model", "save_query_model",
           "top_k_recall"]
