"""Models: thin compositions of shared layers and tasks."""

from tfrs_llmrec.models.alpharec import AlphaRecModel
from tfrs_llmrec.models.base import RecommenderModel, Replicas, StagePlan
from tfrs_llmrec.models.lightgcn import LightGCNModel
from tfrs_llmrec.models.mf_bpr import MatrixFactorizationModel
from tfrs_llmrec.models.motir import MotiRModel
from tfrs_llmrec.models.pop import PopularityModel
from tfrs_llmrec.models.registry import (MODELS, RANKERS, ModelInputs, build_model, build_ranker, is_ranker,
                                         is_trainable, model_spec)
from tfrs_llmrec.models.two_tower import TwoTowerModel

__all__ = ["AlphaRecModel", "LightGCNModel", "MODELS", "MatrixFactorizationModel", "ModelInputs", "MotiRModel",
           "PopularityModel", "RANKERS", "RecommenderModel", "Replicas", "StagePlan", "TwoTowerModel", "build_model",
           "build_ranker", "is_ranker", "is_trainable", "model_spec"]
