"""MotiR (Motivation-aware Retrieval for long-tail recommendation): an ID two-tower whose item side
fuses the ID embedding with a semantic embedding through a learned per-item gate.

Training runs in three stages, selected with `set_stage` (each stage is compiled and fit on its own):

1. "id": the ID two-tower alone (query tower + ID item tower), sampled softmax.
2. "align": the ID towers are frozen; the semantic tower (MLP over a frozen language-model vector)
   is pulled onto the frozen ID item embeddings of the batch's items. The batch's items arrive in
   proportion to their interactions, so the mapping is learnt mostly from items whose ID
   embeddings are trustworthy and then applies to tail items through their text.
3. "joint": everything trains; items are gate(h_cf, h_sem), so a tail item whose ID embedding
   saw few updates can lean on its semantics.

`item_embeddings()` follows the stage: ID embeddings in stage 1, semantic embeddings in stage 2
(how well the aligned semantic tower alone retrieves), fused embeddings in stage 3.
"""

from dataclasses import replace
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrs_llmrec.config.schema import ModelConfig, MotirStageConfig, TrainConfig
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, USER_INDEX
from tfrs_llmrec.layers.gated_fusion import ScalarGate, TwoWeightGate
from tfrs_llmrec.layers.semantic_tower import SemanticItemTower, TextOnlyItemTower, gate_fused
from tfrs_llmrec.layers.towers import HistoryQueryTower, IdItemTower
from tfrs_llmrec.losses.cosine_alignment import cosine_alignment_loss
from tfrs_llmrec.models.base import RecommenderModel, StagePlan, all_items
from tfrs_llmrec.models.two_tower import retrieval_task

STAGES = ("id", "align", "joint")


class MotiRModel(RecommenderModel):
    def __init__(self, num_users: int, item_vectors: np.ndarray, item_train_counts: Sequence[int],
                 config: ModelConfig, seed: Optional[int] = None):
        super().__init__(seed=seed)
        tower, motir = config.tower, config.motir
        self.num_items = len(item_train_counts)
        # Items with training interactions: the others' ID embeddings never train.
        self.seen_items = np.asarray(item_train_counts) > 0
        self.motir_config = motir
        if item_vectors.shape[0] != self.num_items:
            raise ValueError(f"item_vectors has {item_vectors.shape[0]} rows for {self.num_items} items")
        self.item_tower = IdItemTower(self.num_items, tower.dim, tower.hidden_dims, l2_normalize=True)
        self.query_tower = HistoryQueryTower(self.item_tower, num_users, tower.dim, tower.hidden_dims,
                                             use_user_id=tower.use_user_id, l2_normalize=True)
        self.semantic_tower = SemanticItemTower(item_vectors, tower.dim, config.semantic.hidden_dims,
                                                activation=config.semantic.activation, l2_normalize=True,
                                                seed=seed)
        self.gate = (ScalarGate(input_dim=tower.dim, seed=seed) if motir.gate == "scalar" else
                     TwoWeightGate(output_dim=tower.dim, hidden_dim=motir.gate_hidden_dim, input_dim=tower.dim,
                                   seed=seed))
        self.task = retrieval_task(item_train_counts, config)
        self.cross_replica_negatives = config.cross_replica_negatives
        self.negatives_site = self.new_sampling_site()
        self.align_temperature = motir.align_temperature
        self.stage = STAGES[0]
        self.set_stage(STAGES[0])

    def stage_plans(self, train: TrainConfig) -> List[StagePlan]:
        """ID two-tower; alignment until the mean cosine reaches the threshold (logging the
        semantic tower's own hit rates, the paper's Table 6); joint training with the gate."""
        def schedule(stage: MotirStageConfig) -> TrainConfig:
            return replace(train, epochs=stage.epochs, learning_rate=stage.learning_rate,
                           final_learning_rate=stage.final_learning_rate)

        motir = self.motir_config
        return [StagePlan("id", schedule(motir.stage1)),
                StagePlan("align", schedule(motir.stage2), monitor=MotiRModel.mean_alignment_cosine,
                          monitor_name="mean_cosine", stop_at=motir.align_threshold, ranking_extras="semantic_only"),
                StagePlan("joint", schedule(motir.stage3))]

    def mean_alignment_cosine(self) -> float:
        return float(self.alignment_cosines()[self.seen_items].mean())

    def trainable_parts(self, stage: str) -> Dict[str, bool]:
        """Which sub-layers train in `stage` (the frozen language-model vectors never do)."""
        id_towers = stage != "align"
        return {"item_tower": id_towers, "query_tower": id_towers, "semantic_tower": stage != "id",
                "gate": stage == "joint"}

    def set_stage(self, stage: str) -> None:
        """Freezes and unfreezes the sub-layers for `stage`; compile again before fitting."""
        if stage not in STAGES:
            raise ValueError(f"unknown MotiR stage {stage!r}; expected one of {STAGES}")
        self.stage = stage
        for name, trainable in self.trainable_parts(stage).items():
            getattr(self, name).trainable = trainable

    def fused_items(self, item_indices):
        """(L2-normalised gate(h_cf, h_sem), semantic weight) for `item_indices` (`gate_fused`)."""
        return gate_fused(self.gate, self.item_tower.unnormalized(item_indices),
                          self.semantic_tower.mlp(self.semantic_tower.lookup(item_indices)))

    def embed_items(self, item_indices):
        """The item representation the current stage trains and retrieves with."""
        if self.stage == "id":
            return self.item_tower(item_indices)
        if self.stage == "align":
            return self.semantic_tower(item_indices)
        return self.fused_items(item_indices)[0]

    def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        if self.stage == "align":
            # Each item once: a repeated popular item must not be its own in-batch negative.
            items, _ = tf.unique(features[ITEM_INDEX])
            return cosine_alignment_loss(self.semantic_tower(items), self.item_tower(items),
                                         temperature=self.align_temperature)
        query = self.query_tower({USER_INDEX: features[USER_INDEX], HISTORY: features[HISTORY]})
        return self.task(query, features[ITEM_INDEX], self.embed_items,
                         seed=self.sampling_seed_for(self.negatives_site, per_replica=False),
                         replicas=self.replicas if self.cross_replica_negatives else None)

    def item_embeddings(self) -> np.ndarray:
        return all_items(self.embed_items, self.num_items)

    def text_only_item_tower(self) -> Optional[TextOnlyItemTower]:
        """New items from their text alone: the aligned semantic tower in stage 2; in stage 3 the
        gate over a zero ID embedding (an ID that never trained). Stage 1 has no semantic side."""
        if self.stage == "id":
            return None
        return TextOnlyItemTower(self.semantic_tower.mlp, self.gate if self.stage == "joint" else None)

    def semantic_weights(self) -> np.ndarray:
        """[I] the gate's weight on the semantic side for every item."""
        return all_items(lambda items: self.fused_items(items)[1], self.num_items)

    def item_diagnostics(self) -> Dict[str, np.ndarray]:
        # Paper Table 2: the gate should lean on semantics for unpopular items.
        return {"semantic_weight": self.semantic_weights()} if self.stage == "joint" else {}

    def alignment_cosines(self) -> np.ndarray:
        """[I] cosine between each item's semantic and ID embeddings (stage 2's progress)."""
        return all_items(lambda items: tf.reduce_sum(self.semantic_tower(items) * self.item_tower(items), axis=-1),
                         self.num_items)
