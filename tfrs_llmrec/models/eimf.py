"""EIMF: explicit-interest modelling beside a multi-interest backbone, served without an LLM.

- IBIM (implicit): the backbone's K interests from the ID history; in training, target-aware
  attention with the target item's ID embedding as query reads out h_im.
- ESIM (explicit): the user's explicit interests from the features job (the interests of the
  user's Affinity-Propagation exemplar, as text vectors; from an LLM or, offline, item-vector
  centroids: the features manifest says which), projected into the model's space, one
  self-attention block, then target-aware attention with the target item's projected text vector
  t as query reads out h_ex.
- L = L_R(h_im) + gamma * (L_S + L_A): L_R and the semantic prediction task L_S are sampled
  softmaxes of h_im over item ID embeddings and of h_ex over projected item text vectors; L_A is
  `losses.modality_alignment`. A user without explicit interests adds nothing to L_S and to the
  user terms of L_A.

Serving and evaluation use the backbone alone (`query_tower`: ID history -> K interests): no text
and no LLM at request time.
"""

from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrs_llmrec.config.schema import ModelConfig
from tfrs_llmrec.data.spec import ITEM_INDEX, USER_INDEX
from tfrs_llmrec.layers.initializers import glorot
from tfrs_llmrec.layers.interest_readout import InterestSelfAttention, TargetAwareInterestAttention
from tfrs_llmrec.layers.pooling import MaskedMeanPooling
from tfrs_llmrec.losses.modality_alignment import modality_alignment_loss
from tfrs_llmrec.models.sequential import MultiInterestModel
from tfrs_llmrec.models.two_tower import retrieval_task


class EimfModel(MultiInterestModel):
    def __init__(self, num_items: int, max_length: int, item_train_counts: Sequence[int], item_vectors: np.ndarray,
                 user_interests: np.ndarray, user_num_interests: np.ndarray, config: ModelConfig,
                 seed: Optional[int] = None):
        eimf = config.eimf
        super().__init__(num_items, max_length, item_train_counts, config, backbone=eimf.backbone, seed=seed)
        self.eimf = eimf
        num_users, max_interests, _ = user_interests.shape
        # Users of one cluster share their exemplar's interests: keep each distinct set once.
        flat = np.concatenate([user_interests.reshape(num_users, -1), user_num_interests[:, None]], axis=1)
        distinct, owner = np.unique(flat, axis=0, return_inverse=True)
        self.interest_sets = tf.constant(distinct[:, :-1].reshape(len(distinct), max_interests, -1), tf.float32)
        self.interest_counts = tf.constant(distinct[:, -1].astype(np.int64))
        self.user_interest_set = tf.constant(owner.reshape(-1).astype(np.int64))
        self.max_interests = max_interests
        self.item_text = tf.constant(np.asarray(item_vectors, np.float32))
        base = 0 if seed is None else seed
        self.text_projection = tf.keras.layers.Dense(self.dim, kernel_initializer=glorot(seed, 101),
                                                     name="text_projection")
        self.explicit_self_attention = InterestSelfAttention(self.dim, seed=base + 102)
        self.implicit_attention = TargetAwareInterestAttention(self.dim, seed=base + 103)
        self.explicit_attention = TargetAwareInterestAttention(self.dim, seed=base + 104)
        self.explicit_pooling = MaskedMeanPooling()
        self.semantic_task = retrieval_task(item_train_counts, config)
        self.semantic_site = self.new_sampling_site()

    def embed_texts(self, item_indices: tf.Tensor) -> tf.Tensor:
        """Items' text vectors in the model's space (t)."""
        return self.text_projection(tf.gather(self.item_text, item_indices))

    def explicit_interests(self, user_indices: tf.Tensor):
        """[B, M, d] the users' explicit interests after ESIM's self-attention, and their mask [B, M]."""
        sets = tf.gather(self.user_interest_set, tf.maximum(user_indices, 0))
        mask = tf.range(self.max_interests, dtype=tf.int64)[tf.newaxis, :] < tf.gather(self.interest_counts,
                                                                                       sets)[:, tf.newaxis]
        projected = self.text_projection(tf.gather(self.interest_sets, sets))
        return self.explicit_self_attention(projected, mask), mask

    def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        target_ids = features[ITEM_INDEX]
        interests, weights = self.interests(features, training)
        target_embedding = self.embed_items(target_ids)
        target_text = self.embed_texts(target_ids)
        explicit, mask = self.explicit_interests(features[USER_INDEX])
        if self.eimf.use_target_attention:
            implicit_user = self.implicit_attention(interests, target_embedding)
            explicit_user = self.explicit_attention(explicit, target_text, mask)
        else:
            implicit_user = self.read_out(interests, target_embedding)
            explicit_user = self.explicit_pooling(explicit, mask)
        loss = self.retrieval_loss(implicit_user, features) + self.backbone_regularization(weights, features)
        has_interests = tf.cast(tf.reduce_any(mask, axis=1), tf.float32)
        auxiliary = tf.constant(0.0, tf.float32)
        if self.eimf.use_prediction:
            auxiliary += self.semantic_task(explicit_user, target_ids, self.embed_texts, sample_weight=has_interests,
                                            seed=self.sampling_seed_for(self.semantic_site, per_replica=False))
        if self.eimf.use_alignment:
            auxiliary += modality_alignment_loss(explicit_user, implicit_user, target_text, target_embedding,
                                                 alpha=self.eimf.alpha, beta=self.eimf.beta,
                                                 temperature=self.eimf.temperature, target_ids=target_ids,
                                                 user_weight=has_interests)
        return loss + self.eimf.gamma * auxiliary
