"""Semantic IDs: RQ-VAE codes over item (and user) semantic vectors."""

from tfrs_llmrec.semantic_ids.train import (
    SemanticIdResult,
    assign_codes,
    build_model,
    code_statistics,
    disambiguate,
    fit_semantic_ids,
    fit_user_semantic_ids,
    load_quantizer,
    save_quantizer,
)

__all__ = ["SemanticIdResult", "assign_codes", "build_model", "code_statistics", "disambiguate",
           "fit_semantic_ids", "fit_user_semantic_ids", "load_quantizer", "save_quantizer"]
