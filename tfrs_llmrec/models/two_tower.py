"""ID two-tower retrieval: a history/user query tower and an item-ID tower, dot-product scored."""

from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrs_llmrec.config.schema import ModelConfig
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, USER_INDEX
from tfrs_llmrec.layers.towers import HistoryQueryTower, IdItemTower
from tfrs_llmrec.models.base import RecommenderModel, all_items
from tfrs_llmrec.tasks.sampled_retrieval import SampledRetrievalTask


def retrieval_task(item_train_counts: Sequence[int], config: ModelConfig,
                   hardness: float = 0.0) -> SampledRetrievalTask:
    """The sampled-softmax task every ID-tower retriever trains with (`hardness`: REMI's
    interest-aware hard negatives, 0 for everyone else)."""
    return SampledRetrievalTask(item_train_counts, temperature=config.temperature,
                                num_sampled_negatives=config.num_sampled_negatives,
                                negative_sampler=config.negative_sampler, logq_correction=config.logq_correction,
                                remove_accidental_hits=config.remove_accidental_hits, hardness=hardness)


class TwoTowerModel(RecommenderModel):
    def __init__(self, num_users: int, num_items: int, item_train_counts: Sequence[int], config: ModelConfig,
                 seed: Optional[int] = None):
        super().__init__(seed=seed)
        tower = config.tower
        self.num_items = num_items
        self.item_tower = IdItemTower(num_items, tower.dim, tower.hidden_dims, tower.l2_normalize)
        self.query_tower = HistoryQueryTower(self.item_tower, num_users, tower.dim, tower.hidden_dims,
                                             use_user_id=tower.use_user_id, l2_normalize=tower.l2_normalize)
        self.task = retrieval_task(item_train_counts, config)
        self.cross_replica_negatives = config.cross_replica_negatives
        self.negatives_site = self.new_sampling_site()

    def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        query = self.query_tower({USER_INDEX: features[USER_INDEX], HISTORY: features[HISTORY]})
        return self.task(query, features[ITEM_INDEX], self.item_tower,
                         seed=self.sampling_seed_for(self.negatives_site, per_replica=False),
                         replicas=self.replicas if self.cross_replica_negatives else None)

    def item_embeddings(self) -> np.ndarray:
        return all_items(self.item_tower, self.num_items)
