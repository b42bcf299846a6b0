"""The pipeline's components: TFX components whose executors call tfrs_llmrec.workflow.stages."""

from pipelines.components.data import Ingest, SemanticFeatures
from pipelines.components.evaluator import Evaluator
from pipelines.components.index_builder import IndexBuilder
from pipelines.components.pusher import Pusher
from pipelines.components.trainer import Trainer

__all__ = ["Evaluator", "IndexBuilder", "Ingest", "Pusher", "SemanticFeatures", "Trainer"]
