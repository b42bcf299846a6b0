"""Builds the configured model from the dataset's statistics (and semantic vectors, for the LLM models)."""

from typing import Optional, Tuple, Union

import numpy as np

from tfrs_llmrec.config.schema import ModelConfig
from tfrs_llmrec.models.alpharec import AlphaRecModel
from tfrs_llmrec.models.lightgcn import LightGCNModel
from tfrs_llmrec.models.mf_bpr import MatrixFactorizationModel
from tfrs_llmrec.models.motir import MotiRModel
from tfrs_llmrec.models.pop import PopularityModel
from tfrs_llmrec.models.two_tower import TwoTowerModel

RetrievalModel = Union[PopularityModel, TwoTowerModel, MatrixFactorizationModel, LightGCNModel, MotiRModel,
                       AlphaRecModel]
SEMANTIC_MODELS = ("motir", "alpharec")
GRAPH_MODELS = ("lightgcn", "alpharec")


def build_retrieval_model(name: str, config: ModelConfig, num_users: int, item_train_counts,
                          train_pairs: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                          item_vectors: Optional[np.ndarray] = None, seed: Optional[int] = None) -> RetrievalModel:
    """`train_pairs` (users, items) of the training split are needed by the graph models;
    `item_vectors` [I, d] by the semantic models."""
    num_items = len(item_train_counts)
    if name in GRAPH_MODELS and train_pairs is None:
        raise ValueError(f"{name} needs the training interactions (train_pairs)")
    if name in SEMANTIC_MODELS and item_vectors is None:
        raise ValueError(f"{name} needs the items' semantic vectors (item_vectors)")
    if name == "pop":
        return PopularityModel(item_train_counts)
    if name == "two_tower":
        return TwoTowerModel(num_users, num_items, item_train_counts, config)
    if name == "mf_bpr":
        return MatrixFactorizationModel(num_users, num_items, config, seed=seed)
    if name == "lightgcn":
        return LightGCNModel(num_users, num_items, train_pairs[0], train_pairs[1], config)
    if name == "motir":
        return MotiRModel(num_users, item_vectors, item_train_counts, config, seed=seed)
    if name == "alpharec":
        return AlphaRecModel(item_vectors, num_users, train_pairs[0], train_pairs[1], config, seed=seed)
    raise ValueError(f"unknown model {name!r}")


def is_trainable(name: str, config: ModelConfig) -> bool:
    """Pop has nothing to learn; a zero-shot AlphaRec reuses another dataset's trained MLP."""
    if name == "pop":
        return False
    return not (name == "alpharec" and config.alpharec.zero_shot_from is not None)
