"""Builds the configured model from the dataset's statistics."""

from typing import Optional, Tuple, Union

import numpy as np

from tfrs_llmrec.config.schema import ModelConfig
from tfrs_llmrec.models.lightgcn import LightGCNModel
from tfrs_llmrec.models.mf_bpr import MatrixFactorizationModel
from tfrs_llmrec.models.pop import PopularityModel
from tfrs_llmrec.models.two_tower import TwoTowerModel

RetrievalModel = Union[PopularityModel, TwoTowerModel, MatrixFactorizationModel, LightGCNModel]


def build_retrieval_model(name: str, config: ModelConfig, num_users: int, item_train_counts,
                          train_pairs: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> RetrievalModel:
    """`train_pairs` (users, items) of the training split are needed by graph models (lightgcn)."""
    num_items = len(item_train_counts)
    if name == "pop":
        return PopularityModel(item_train_counts)
    if name == "two_tower":
        return TwoTowerModel(num_users, num_items, item_train_counts, config)
    if name == "mf_bpr":
        return MatrixFactorizationModel(num_users, num_items, config)
    if name == "lightgcn":
        if train_pairs is None:
            raise ValueError("lightgcn needs the training interactions (train_pairs)")
        return LightGCNModel(num_users, num_items, train_pairs[0], train_pairs[1], config)
    raise ValueError(f"unknown model {name!r}")


def is_trainable(name: str) -> bool:
    return name != "pop"
