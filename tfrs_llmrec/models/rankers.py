"""CTR rankers over impressions (tfrs_llmrec.data.ctr_spec): the embedding + MLP ranker, DIN, and
DIN with an MMoE head. AKT-Rec (models/akt_rec.py) derives from the same base.

An impression is represented as [user; user attributes; candidate item; item attributes; activity
buckets; pooled behaviour sequence]: the sequence (the user's earlier clicks) is mean-pooled by
the MLP ranker and pooled by target attention with the candidate by DIN (Zhou et al., KDD 2018).
An item is its ID embedding plus the projection of its frozen language-model vector. The head is
an MLP, or an MMoE whose second task regresses the rating on sources with ratings.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrs_llmrec.config.schema import ModelConfig
from tfrs_llmrec.data import ctr_spec
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, PAD_ITEM, USER_INDEX
from tfrs_llmrec.layers.activations import activation_layer
from tfrs_llmrec.layers.ctr_features import ImpressionSideFeatures
from tfrs_llmrec.layers.mmoe import MMoE
from tfrs_llmrec.layers.pooling import MaskedMeanPooling
from tfrs_llmrec.layers.target_attention import TargetAttention
from tfrs_llmrec.models.base import TrainableModel
from tfrs_llmrec.tasks.ctr import CLICK, CtrTask
from tfrs_llmrec.layers.initializers import embedding_uniform, glorot


@dataclass(frozen=True)
class CtrInputs:
    """What a CTR dataset and the features job provide to build a ranker (arrays by index)."""

    num_users: int
    num_items: int
    attribute_sizes: Mapping[str, int]
    activity_buckets: int
    # Whether impressions carry ratings (then MMoE heads add the rating task).
    has_ratings: bool
    item_is_head: np.ndarray
    user_is_active: np.ndarray
    # [I] / [U] activity buckets of the training impressions (what a history item's gate reads).
    item_activity: np.ndarray
    user_activity: np.ndarray
    # [I, d_sem] frozen language-model vectors; None leaves them out.
    item_vectors: Optional[np.ndarray] = None
    # [I, levels] / [U, levels] RQ-VAE semantic IDs (AKT-Rec's clusters).
    item_semantic_ids: Optional[np.ndarray] = None
    user_semantic_ids: Optional[np.ndarray] = None


class DeepHead(tf.keras.layers.Layer):
    """Dense -> activation (Dice / PReLU) -> dropout per hidden layer, then one logit per row."""

    def __init__(self, units: Sequence[int], activation: str, dropout: float = 0.0, seed: Optional[int] = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.hidden = [tf.keras.layers.Dense(size, kernel_initializer=glorot(seed, index))
                       for index, size in enumerate(units)]
        self.activations = [activation_layer(activation) for _ in units]
        self.dropout = tf.keras.layers.Dropout(dropout, seed=seed)
        self.output_layer = tf.keras.layers.Dense(1, kernel_initializer=glorot(seed, len(units)))

    def call(self, inputs, training=False):
        outputs = inputs
        for dense, activation in zip(self.hidden, self.activations):
            outputs = self.dropout(activation(dense(outputs), training=training), training=training)
        return tf.squeeze(self.output_layer(outputs), axis=-1)


class CtrRanker(TrainableModel, metaclass=abc.ABCMeta):
    """Base of the rankers: `task_outputs(features)` gives {"click": logits [B] (, "rating": [B])};
    `compute_loss` is the CTR task plus `auxiliary_losses` (embedding L2 here)."""

    def __init__(self, inputs: CtrInputs, config: ModelConfig, pooling: str, head: str, seed: Optional[int] = None):
        super().__init__(seed=seed)
        ranking = config.ranking
        self.ctr_inputs = inputs
        self.ranking_config = ranking
        dim = ranking.embedding_dim
        self.side_features = ImpressionSideFeatures(
            inputs.attribute_sizes, inputs.activity_buckets, dim,
            inputs.item_vectors if ranking.use_item_vector else None, seed=seed)
        self.pooling_kind = pooling
        if pooling == "attention":
            self.attention = TargetAttention(ranking.attention_units, activation=ranking.activation,
                                             normalization=ranking.attention_normalization, seed=seed)
        else:
            self.mean_pooling = MaskedMeanPooling()
        self.multi_task = head == "mmoe" and inputs.has_ratings
        if head == "mmoe":
            mmoe = ranking.mmoe
            self.head = MMoE(num_experts=mmoe.num_experts, expert_units=mmoe.expert_units,
                             num_tasks=2 if self.multi_task else 1, tower_units=mmoe.tower_units, seed=seed)
        else:
            self.head = DeepHead(ranking.mlp_units, ranking.activation, ranking.dropout, seed=seed)
        self.head_kind = head
        self.task = CtrTask(ranking.rating_loss_weight if self.multi_task else 0.0)
        self.embedding_l2 = ranking.embedding_l2
        # Row num_users / num_items of the ID tables is the default ID (see `with_default_ids`).
        self.default_user, self.default_item = inputs.num_users, inputs.num_items
        self.unknown_id_rate = ranking.unknown_id_rate
        self.unknown_id_site = self.new_sampling_site()

    def with_default_ids(self, features, training: bool = False):
        """Candidate and user IDs < 0 (unknown at scoring time) become the default IDs; in training a
        random `unknown_id_rate` share of them too, so the defaults learn what an unknown ID gets."""
        users, items = tf.cast(features[USER_INDEX], tf.int64), tf.cast(features[ITEM_INDEX], tf.int64)
        unknown_users, unknown_items = users < 0, items < 0
        if training and self.unknown_id_rate:
            draws = tf.random.stateless_uniform(tf.stack([2, tf.size(users)]),
                                                self.sampling_seed_for(self.unknown_id_site))
            unknown_users |= draws[0] < self.unknown_id_rate
            unknown_items |= draws[1] < self.unknown_id_rate
        return {**features, USER_INDEX: tf.where(unknown_users, tf.constant(self.default_user, tf.int64), users),
                ITEM_INDEX: tf.where(unknown_items, tf.constant(self.default_item, tf.int64), items)}

    # ------------------------------------------------------------------ representations

    @abc.abstractmethod
    def user_embedding(self, user_indices, features) -> tf.Tensor:
        """[B, d] the users' ID representations (index num_users is the default user)."""

    @abc.abstractmethod
    def item_id_embedding(self, item_indices) -> tf.Tensor:
        """[..., d] the items' ID representations (index num_items is the default item)."""

    def item_embedding(self, item_indices) -> tf.Tensor:
        """[..., d] an item: its ID embedding plus its projected language-model vector."""
        embedding = self.item_id_embedding(item_indices)
        vector = self.side_features.item_vector_embedding(item_indices)
        return embedding if vector is None else embedding + vector

    def pool_history(self, candidate, history_embeddings, mask, training=False) -> tf.Tensor:
        if self.pooling_kind == "attention":
            return self.attention(candidate, history_embeddings, mask, training=training)
        return self.mean_pooling(history_embeddings, mask)

    def impression_vector(self, features, training=False) -> tf.Tensor:
        """[B, width] the instance representation the head scores."""
        side = self.side_features(features)
        candidate = self.item_embedding(features[ITEM_INDEX])
        history = features[HISTORY]
        pooled = self.pool_history(candidate, self.item_embedding(history), history != PAD_ITEM, training=training)
        user = self.user_embedding(features[USER_INDEX], features)
        return tf.concat([user, side["user"], candidate, side["item"], side["activity"], pooled], axis=-1)

    # ------------------------------------------------------------------ outputs and losses

    def head_outputs(self, vector, training=False) -> Dict[str, tf.Tensor]:
        if self.head_kind == "mmoe":
            logits = self.head(vector, training=training)
            outputs = {CLICK: logits[0]}
            if self.multi_task:
                outputs[ctr_spec.RATING] = logits[1]
            return outputs
        return {CLICK: self.head(vector, training=training)}

    def task_outputs(self, features, training=False) -> Dict[str, tf.Tensor]:
        """The heads' outputs for impressions whose IDs went through `with_default_ids`."""
        return self.head_outputs(self.impression_vector(features, training=training), training=training)

    def predict_logits(self, features) -> tf.Tensor:
        """[B] click logits (inference mode); a user or candidate index < 0 is unknown."""
        return tf.cast(self.task_outputs(self.with_default_ids(features), training=False)[CLICK], tf.float32)

    def scoring_function(self):
        """`predict_logits` as one tf.function per model, traced once for any batch size."""
        if getattr(self, "_scoring_function", None) is None:
            self._scoring_function = tf.function(self.predict_logits, reduce_retracing=True)
        return self._scoring_function

    def auxiliary_losses(self, features, outputs, training=False) -> tf.Tensor:
        if not self.embedding_l2:
            return tf.constant(0.0)
        ids = [self.user_embedding(features[USER_INDEX], features), self.item_id_embedding(features[ITEM_INDEX])]
        return self.embedding_l2 * tf.add_n([tf.reduce_mean(tf.reduce_sum(tf.square(tf.cast(e, tf.float32)), -1))
                                             for e in ids])

    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        features = self.with_default_ids(features, training)
        outputs = self.task_outputs(features, training=training)
        return self.task(features, outputs) + self.auxiliary_losses(features, outputs, training=training)

    def example_diagnostics(self, features) -> Dict[str, tf.Tensor]:
        """Per-impression values worth reporting by popularity bucket (e.g. a gate's weight)."""
        return {}


class DeepInterestRanker(CtrRanker):
    """The MLP ranker (mean pooling, MLP head), DIN (target attention, MLP head) and DIN + MMoE."""

    def __init__(self, inputs: CtrInputs, config: ModelConfig, pooling: str = "attention", head: str = "mlp",
                 seed: Optional[int] = None):
        super().__init__(inputs, config, pooling, head, seed=seed)
        dim = config.ranking.embedding_dim
        # One more row each: the default ID.
        self.user_ids = tf.keras.layers.Embedding(inputs.num_users + 1, dim, name="user_id",
                                                  embeddings_initializer=embedding_uniform(seed, 20))
        self.item_ids = tf.keras.layers.Embedding(inputs.num_items + 1, dim, name="item_id",
                                                  embeddings_initializer=embedding_uniform(seed, 21))

    def user_embedding(self, user_indices, features) -> tf.Tensor:
        return self.user_ids(user_indices)

    def item_id_embedding(self, item_indices) -> tf.Tensor:
        # PAD_ITEM positions read row 0; the history mask leaves them out.
        return self.item_ids(tf.maximum(item_indices, 0))


RANKER_LAYOUTS: Dict[str, List[str]] = {"mlp_ranker": ["mean", "mlp"], "din": ["attention", "mlp"],
                                        "din_mmoe": ["attention", "mmoe"]}
