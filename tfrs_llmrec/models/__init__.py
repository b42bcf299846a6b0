"""Models: thin compositions of shared layers and tasks."""

from tfrs_llmrec.models.lightgcn import LightGCNModel
from tfrs_llmrec.models.mf_bpr import MatrixFactorizationModel
from tfrs_llmrec.models.pop import PopularityModel
from tfrs_llmrec.models.registry import build_retrieval_model, is_trainable
from tfrs_llmrec.models.two_tower import TwoTowerModel

__all__ = ["LightGCNModel", "MatrixFactorizationModel", "PopularityModel", "TwoTowerModel", "build_retrieval_model",
           "is_trainable"]
