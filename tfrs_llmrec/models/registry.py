"""Builds the configured model from the dataset's statistics."""

from typing import Union

from tfrs_llmrec.config.schema import ModelConfig
from tfrs_llmrec.models.pop import PopularityModel
from tfrs_llmrec.models.two_tower import TwoTowerModel

RetrievalModel = Union[PopularityModel, TwoTowerModel]


def build_retrieval_model(name: str, config: ModelConfig, num_users: int, item_train_counts) -> RetrievalModel:
    if name == "pop":
        return PopularityModel(item_train_counts)
    if name == "two_tower":
        return TwoTowerModel(num_users, len(item_train_counts), item_train_counts, config)
    raise ValueError(f"unknown model {name!r}")


def is_trainable(name: str) -> bool:
    return name != "pop"
