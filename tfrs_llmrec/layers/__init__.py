"""Shared Keras layers that every model composes."""

from tfrs_llmrec.layers.gated_fusion import ScalarGate, TwoWeightGate
from tfrs_llmrec.layers.lightgcn import LightGCNPropagation, normalized_adjacency, split_user_item
from tfrs_llmrec.layers.mlp import MLP
from tfrs_llmrec.layers.pooling import MaskedMeanPooling
from tfrs_llmrec.layers.semantic_tower import SemanticHistoryQueryTower, SemanticItemTower
from tfrs_llmrec.layers.towers import HistoryQueryTower, IdItemTower

__all__ = ["HistoryQueryTower", "IdItemTower", "LightGCNPropagation", "MLP", "MaskedMeanPooling", "ScalarGate",
           "SemanticHistoryQueryTower", "SemanticItemTower", "TwoWeightGate", "normalized_adjacency", "split_user_item"]

from tfrs_llmrec.layers.activations import Dice, activation_layer
from tfrs_llmrec.layers.cluster_embedding import ClusterGatedEmbedding, ClusterGatedOutput
from tfrs_llmrec.layers.mmoe import MMoE
from tfrs_llmrec.layers.target_attention import TargetAttention

__all__ += ["ClusterGatedEmbedding", "ClusterGatedOutput", "Dice", "MMoE", "TargetAttention", "activation_layer"]

from tfrs_llmrec.layers.interest_extraction import CapsuleInterestExtractor, SelfAttentiveInterests
from tfrs_llmrec.layers.interest_readout import (InterestSelfAttention, TargetAwareInterestAttention,
                                                 label_aware_attention)
from tfrs_llmrec.layers.sequence_encoder import CausalSelfAttentionEncoder, MultiHeadSelfAttention

__all__ += ["CapsuleInterestExtractor", "CausalSelfAttentionEncoder", "InterestSelfAttention",
            "MultiHeadSelfAttention", "SelfAttentiveInterests", "TargetAwareInterestAttention",
            "label_aware_attention"]
