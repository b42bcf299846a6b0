"""Sequential retrieval over the ID history: SASRec (one query vector) and the multi-interest
models MIND, ComiRec-SA and REMI (K query vectors per user).

Every model here shares one item-ID embedding table between the history and the candidates, and
trains with the sampled softmax (in-batch plus sampled negatives, logQ) on (history -> next item)
examples, the dataset's training interactions. None reads a user ID, so a user never seen in
training (the `users` split's held-out users, a new user at serving time) is served from the
history alone.

A multi-interest query is [B, K, d]. Training meets the target with one user vector: the interest
closest to it (`readout: argmax`, ComiRec) or MIND's label-aware mix of them. Serving scores an
item by its best interest, what a per-interest search merged by max score returns; the evaluator
and the exported models do exactly that.
"""

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tfrs_llmrec.config.schema import ModelConfig
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, PAD_ITEM
from tfrs_llmrec.layers.initializers import embedding_uniform
from tfrs_llmrec.layers.interest_extraction import CapsuleInterestExtractor, SelfAttentiveInterests
from tfrs_llmrec.layers.interest_readout import label_aware_attention
from tfrs_llmrec.layers.sequence_encoder import CausalSelfAttentionEncoder
from tfrs_llmrec.losses.routing_regularization import routing_regularization_loss
from tfrs_llmrec.models.base import RecommenderModel, all_items
from tfrs_llmrec.models.two_tower import retrieval_task

# The multi-interest backbones by model name: routing (MIND, REMI) or self-attention (ComiRec-SA).
ROUTING_BACKBONES = ("mind", "remi")
BACKBONES = ("mind", "comirec_sa", "remi")


def _normalized(vectors: tf.Tensor, l2_normalize: bool) -> tf.Tensor:
    return tf.math.l2_normalize(vectors, axis=-1) if l2_normalize else vectors


class SasRecQueryTower(tf.keras.layers.Layer):
    """History -> [B, d]: the causal self-attention stack's output at the most recent position."""

    def __init__(self, item_embedding: tf.keras.layers.Embedding, encoder: CausalSelfAttentionEncoder,
                 l2_normalize: bool, **kwargs):
        super().__init__(**kwargs)
        self.item_embedding = item_embedding
        self.encoder = encoder
        self.l2_normalize = l2_normalize

    def call(self, features, training=None):
        history = features[HISTORY]
        hidden = self.encoder(self.item_embedding(tf.maximum(history, 0)), history != PAD_ITEM, training=training)
        return _normalized(hidden[:, 0], self.l2_normalize)


class InterestQueryTower(tf.keras.layers.Layer):
    """History -> [B, K, d] interests; with `with_weights`, also the item-to-interest weights [B, K, L]
    (the routing coefficients or the self-attention)."""

    def __init__(self, item_embedding: tf.keras.layers.Embedding, extractor: tf.keras.layers.Layer,
                 l2_normalize: bool, **kwargs):
        super().__init__(**kwargs)
        self.item_embedding = item_embedding
        self.extractor = extractor
        self.l2_normalize = l2_normalize

    def call(self, features, training=None, with_weights: bool = False):
        history = features[HISTORY]
        embeddings = self.item_embedding(tf.maximum(history, 0))
        mask = history != PAD_ITEM
        if isinstance(self.extractor, CapsuleInterestExtractor):
            # Routing agreement is a dot product against N(0, 1) initial logits, so it needs
            # behaviours of a fixed scale: under cosine scoring the raw embeddings stay near their
            # small initial norm and the routing would never move from its random start.
            embeddings = _normalized(embeddings, self.l2_normalize)
            interests, weights = self.extractor(embeddings, mask, training=training, return_routing=True)
        else:
            interests, weights = self.extractor(embeddings, mask, training=training, return_attention=True)
        interests = _normalized(interests, self.l2_normalize)
        return (interests, weights) if with_weights else interests


class SequentialRetrievalModel(RecommenderModel):
    """What SASRec and the multi-interest models share: the item table, the task, the interface."""

    def __init__(self, num_items: int, item_train_counts: Sequence[int], config: ModelConfig,
                 seed: Optional[int] = None, hardness: float = 0.0):
        super().__init__(seed=seed)
        self.num_items = num_items
        self.dim = config.tower.dim
        # Cosine scoring (with the task's temperature) when set, raw dot products otherwise.
        self.l2_normalize = config.tower.l2_normalize
        self.item_embedding = tf.keras.layers.Embedding(num_items, self.dim, name="item_id_embedding",
                                                        embeddings_initializer=embedding_uniform(seed))
        self.task = retrieval_task(item_train_counts, config, hardness)
        self.cross_replica_negatives = config.cross_replica_negatives
        self.negatives_site = self.new_sampling_site()

    def embed_items(self, item_indices: tf.Tensor) -> tf.Tensor:
        return _normalized(self.item_embedding(item_indices), self.l2_normalize)

    def retrieval_loss(self, user_vectors: tf.Tensor, features: Dict[str, tf.Tensor]) -> tf.Tensor:
        return self.task(user_vectors, features[ITEM_INDEX], self.embed_items,
                         seed=self.sampling_seed_for(self.negatives_site, per_replica=False),
                         replicas=self.replicas if self.cross_replica_negatives else None)

    def item_embeddings(self) -> np.ndarray:
        return all_items(self.embed_items, self.num_items)


class SasRecModel(SequentialRetrievalModel):
    """SASRec (Kang & McAuley, 2018): causal self-attention blocks with positional embeddings."""

    def __init__(self, num_items: int, max_length: int, item_train_counts: Sequence[int], config: ModelConfig,
                 seed: Optional[int] = None):
        super().__init__(num_items, item_train_counts, config, seed)
        sequence = config.sequence
        encoder = CausalSelfAttentionEncoder(max_length, self.dim, num_blocks=sequence.num_blocks,
                                             num_heads=sequence.num_heads, dropout=sequence.dropout, seed=seed)
        self.query_tower = SasRecQueryTower(self.item_embedding, encoder, self.l2_normalize)

    def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self.retrieval_loss(self.query_tower(features, training=training), features)


class MultiInterestModel(SequentialRetrievalModel):
    """MIND (routing, label-aware readout), ComiRec-SA (self-attention, argmax readout) and REMI (the
    routing backbone with interest-aware hard negatives and the routing regulariser): which one is
    set by `backbone` and `config.sequence`."""

    def __init__(self, num_items: int, max_length: int, item_train_counts: Sequence[int], config: ModelConfig,
                 backbone: str, seed: Optional[int] = None):
        if backbone not in BACKBONES:
            raise ValueError(f"unknown multi-interest backbone {backbone!r}; expected one of {', '.join(BACKBONES)}")
        sequence = config.sequence
        hardness = sequence.hard_negative_beta if backbone == "remi" else 0.0
        super().__init__(num_items, item_train_counts, config, seed, hardness=hardness)
        self.backbone = backbone
        self.num_interests = sequence.num_interests
        if backbone in ROUTING_BACKBONES:
            extractor = CapsuleInterestExtractor(sequence.num_interests, self.dim,
                                                 iterations=sequence.routing_iterations, seed=seed)
        else:
            extractor = SelfAttentiveInterests(sequence.num_interests, self.dim, max_length, seed=seed)
        self.query_tower = InterestQueryTower(self.item_embedding, extractor, self.l2_normalize)
        self.readout_power = sequence.label_aware_power if sequence.readout == "label_aware" else None
        self.routing_weight = sequence.routing_regularization if backbone == "remi" else 0.0

    def interests(self, features, training: bool) -> Tuple[tf.Tensor, tf.Tensor]:
        """[B, K, d] interests and [B, K, L] item-to-interest weights."""
        return self.query_tower(features, training=training, with_weights=True)

    def read_out(self, interests: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        """[B, d]: the user vector that meets `target` in training."""
        return label_aware_attention(interests, target, self.readout_power)[0]

    def backbone_regularization(self, weights: tf.Tensor, features) -> tf.Tensor:
        if self.routing_weight <= 0.0:
            return tf.constant(0.0, tf.float32)
        return self.routing_weight * routing_regularization_loss(weights, features[HISTORY] != PAD_ITEM, dim=self.dim)

    def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        interests, weights = self.interests(features, training)
        user = self.read_out(interests, self.embed_items(features[ITEM_INDEX]))
        return self.retrieval_loss(user, features) + self.backbone_regularization(weights, features)
