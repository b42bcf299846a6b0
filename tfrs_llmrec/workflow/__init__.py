"""The experiment's stages as library functions (stages) and `llmrec run`'s run-directory layout (run).

Both `llmrec` and the TFX components in pipelines/ call tfrs_llmrec.workflow.stages."""

from tfrs_llmrec.workflow.stages import (StageError, evaluate, export, ingest, model_names, needs_features, restore,
                                         semantic_features, train)

__all__ = ["StageError", "evaluate", "export", "ingest", "model_names", "needs_features", "restore",
           "semantic_features", "train"]
