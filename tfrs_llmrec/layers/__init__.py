"""Shared Keras layers that every model composes."""

from tfrs_llmrec.layers.lightgcn import LightGCNPropagation, normalized_adjacency, split_user_item
from tfrs_llmrec.layers.mlp import MLP
from tfrs_llmrec.layers.pooling import MaskedMeanPooling
from tfrs_llmrec.layers.towers import HistoryQueryTower, IdItemTower

__all__ = ["HistoryQueryTower", "IdItemTower", "LightGCNPropagation", "MLP", "MaskedMeanPooling", "normalized_adjacency",
           "split_user_item"]
