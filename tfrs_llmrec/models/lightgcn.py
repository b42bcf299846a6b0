"""LightGCN with ID embeddings: embeddings propagated over the normalised user-item graph, BPR loss."""

from typing import Optional

import numpy as np
import tensorflow as tf

from tfrs_llmrec.config.schema import ModelConfig
from tfrs_llmrec.data.spec import ITEM_INDEX, USER_INDEX
from tfrs_llmrec.layers.initializers import embedding_table
from tfrs_llmrec.layers.lightgcn import LightGCNPropagation, normalized_adjacency, split_user_item
from tfrs_llmrec.layers.training_positives import TrainingPositives
from tfrs_llmrec.losses import bpr_loss, l2_regularization
from tfrs_llmrec.models.base import RecommenderModel


class LightGCNModel(RecommenderModel):
    """`train_users`/`train_items` are the training interactions that define the graph (and that
    sampled negatives avoid when `config.negatives_exclude_train_items`).

    Every replica propagates the whole graph each step (the embeddings are replicated), so under
    N replicas the propagation cost per step does not shrink; only the batch is split.
    """

    def __init__(self, num_users: int, num_items: int, train_users: np.ndarray, train_items: np.ndarray,
                 config: ModelConfig, seed: Optional[int] = None):
        super().__init__(seed=seed)
        self.num_users, self.num_items = num_users, num_items
        self.adjacency = normalized_adjacency(num_users, num_items, train_users, train_items)
        self.embeddings = self.add_weight(
            name="node_embeddings", shape=(num_users + num_items, config.tower.dim),
            initializer=embedding_table(config.embedding_init, seed))
        self.propagation = LightGCNPropagation(config.lightgcn_layers)
        self.l2_weight = config.l2_weight
        self.negatives_site = self.new_sampling_site()
        self.positives = (TrainingPositives(train_users, train_items, num_items)
                          if config.negatives_exclude_train_items else None)

    def propagated(self):
        return split_user_item(self.propagation(self.embeddings, self.adjacency), self.num_users)

    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        users, items = self.propagated()
        user_ids, positive_ids = features[USER_INDEX], features[ITEM_INDEX]
        negative_ids = self.uniform_negatives(self.negatives_site, user_ids, self.num_items, self.positives)
        user, positive, negative = (tf.gather(users, user_ids), tf.gather(items, positive_ids),
                                    tf.gather(items, negative_ids))
        loss = bpr_loss(tf.reduce_sum(user * positive, -1), tf.reduce_sum(user * negative, -1))
        # As in LightGCN, regularise the layer-0 embeddings of the batch's nodes.
        initial = [tf.gather(self.embeddings, user_ids), tf.gather(self.embeddings, self.num_users + positive_ids),
                   tf.gather(self.embeddings, self.num_users + negative_ids)]
        return loss + l2_regularization(*initial, weight=self.l2_weight)

    def item_embeddings(self) -> np.ndarray:
        return self.propagated()[1].numpy()

    def query_embeddings(self, user_indices: np.ndarray, histories=None) -> np.ndarray:
        return tf.gather(self.propagated()[0], user_indices).numpy()

    def serving_query_tower(self):
        return None  # transductive: no history -> query tower to export
