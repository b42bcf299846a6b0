"""ID two-tower retrieval: a history/user query tower and an item-ID tower, dot-product scored."""

from typing import Dict, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_llmrec.config.schema import ModelConfig
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, USER_INDEX
from tfrs_llmrec.layers.towers import HistoryQueryTower, IdItemTower
from tfrs_llmrec.tasks.sampled_retrieval import SampledRetrievalTask


class TwoTowerModel(tfrs.Model):
    def __init__(self, num_users: int, num_items: int, item_train_counts: Sequence[int], config: ModelConfig):
        super().__init__()
        tower = config.tower
        self.num_items = num_items
        self.item_tower = IdItemTower(num_items, tower.dim, tower.hidden_dims, tower.l2_normalize)
        self.query_tower = HistoryQueryTower(self.item_tower, num_users, tower.dim, tower.hidden_dims,
                                             use_user_id=tower.use_user_id, l2_normalize=tower.l2_normalize)
        self.task = SampledRetrievalTask(item_train_counts, temperature=config.temperature,
                                         num_sampled_negatives=config.num_sampled_negatives,
                                         negative_sampler=config.negative_sampler,
                                         logq_correction=config.logq_correction,
                                         remove_accidental_hits=config.remove_accidental_hits)

    def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        query = self.query_tower({USER_INDEX: features[USER_INDEX], HISTORY: features[HISTORY]})
        return self.task(query, features[ITEM_INDEX], self.item_tower)

    def item_embeddings(self, batch_size: int = 65536) -> np.ndarray:
        parts = [self.item_tower(tf.range(start, min(start + batch_size, self.num_items), dtype=tf.int64)).numpy()
                 for start in range(0, self.num_items, batch_size)]
        return np.concatenate(parts, axis=0)

    def query_embeddings(self, user_indices: np.ndarray, histories: np.ndarray) -> np.ndarray:
        return self.query_tower({USER_INDEX: tf.constant(user_indices, tf.int64),
                                 HISTORY: tf.constant(histories, tf.int64)}).numpy()
