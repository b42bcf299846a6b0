"""Models: thin compositions of shared layers and tasks."""

from tfrs_llmrec.models.alpharec import AlphaRecModel
from tfrs_llmrec.models.lightgcn import LightGCNModel
from tfrs_llmrec.models.mf_bpr import MatrixFactorizationModel
from tfrs_llmrec.models.motir import MotiRModel
from tfrs_llmrec.models.pop import PopularityModel
from tfrs_llmrec.models.registry import SEMANTIC_MODELS, build_retrieval_model, is_trainable
from tfrs_llmrec.models.two_tower import TwoTowerModel

__all__ = ["AlphaRecModel", "LightGCNModel", "MatrixFactorizationModel", "MotiRModel", "PopularityModel",
           "SEMANTIC_MODELS", "TwoTowerModel", "build_retrieval_model", "is_trainable"]
