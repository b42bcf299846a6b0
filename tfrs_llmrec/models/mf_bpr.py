"""Matrix factorisation trained with BPR: one sampled negative item per (user, positive) pair."""

from typing import Optional

import numpy as np
import tensorflow as tf

from tfrs_llmrec.config.schema import ModelConfig
from tfrs_llmrec.data.spec import ITEM_INDEX, USER_INDEX
from tfrs_llmrec.layers.initializers import embedding_table
from tfrs_llmrec.layers.training_positives import TrainingPositives
from tfrs_llmrec.losses import bpr_loss, l2_regularization
from tfrs_llmrec.models.base import RecommenderModel


class MatrixFactorizationModel(RecommenderModel):
    """`train_users`/`train_items` are the training interactions, which sampled negatives avoid
    when `config.negatives_exclude_train_items`."""

    def __init__(self, num_users: int, num_items: int, train_users: np.ndarray, train_items: np.ndarray,
                 config: ModelConfig, seed: Optional[int] = None):
        super().__init__(seed=seed)
        self.num_items = num_items
        self.user_embedding = tf.keras.layers.Embedding(num_users, config.tower.dim,
                                                        embeddings_initializer=embedding_table(config.embedding_init, seed, 0))
        self.item_embedding = tf.keras.layers.Embedding(num_items, config.tower.dim,
                                                        embeddings_initializer=embedding_table(config.embedding_init, seed, 1))
        self.l2_weight = config.l2_weight
        self.negatives_site = self.new_sampling_site()
        self.positives = (TrainingPositives(train_users, train_items, num_items)
                          if config.negatives_exclude_train_items else None)

    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        users = self.user_embedding(features[USER_INDEX])
        positives = self.item_embedding(features[ITEM_INDEX])
        sampled = self.uniform_negatives(self.negatives_site, features[USER_INDEX], self.num_items, self.positives)
        negatives = self.item_embedding(sampled)
        loss = bpr_loss(tf.reduce_sum(users * positives, -1), tf.reduce_sum(users * negatives, -1))
        return loss + l2_regularization(users, positives, negatives, weight=self.l2_weight)

    def item_embeddings(self) -> np.ndarray:
        return self.item_embedding(tf.range(self.num_items, dtype=tf.int64)).numpy()

    def query_embeddings(self, user_indices: np.ndarray, histories=None) -> np.ndarray:
        return self.user_embedding(tf.constant(user_indices, tf.int64)).numpy()

    def serving_query_tower(self):
        return None  # transductive: no history -> query tower to export
