"""AKT-Rec: asymmetric knowledge transfer for long-tail CTR prediction, composed of shared layers.

- CGAE (`ClusterGatedEmbedding`): every user and item ID has an individual embedding d and the
  embedding c of its cluster, its semantic-ID prefix of `cluster_level` levels (RQ-VAE codes of its
  language-model vector, from the features job); e = r * c + (1 - r) * d with r = G1(activity
  bucket of the ID's training impressions), so a rarely seen ID can lean on its cluster.
- Head-to-tail transfer (`asymmetric_transfer_loss`): per cluster, the mean embedding e of its head
  members (top items by training impressions; active users) and of its tail members form a pair;
  lambda1 * InfoNCE(head, sg(tail)) + lambda2 * InfoNCE(tail, sg(head)) over the clusters of the
  batch, lambda1 < lambda2, so knowledge flows mostly from head to tail. Plus the soft
  orthogonality regulariser (cos(c, d))^2, so d holds what the cluster does not.
- HFA: an instance view [user; attributes; candidate; its attributes; activity; DIN(history,
  candidate)] and a cluster view [user; attributes; the mean representation of the candidate's
  top-level cluster; attributes; activity; target attention over only the history items that
  share the candidate's top-level semantic ID (hard retrieval)], each projected to one width and
  fused by alpha = G2([user activity; item activity; cross activity]).
- An MLP or MMoE head; loss = L_main + L_trans + orthogonality_weight * L_ortho (+ embedding L2).

An unknown user or item scores through a learned default ID (`CtrRanker.with_default_ids`); an
unknown item whose semantic ID is given at scoring time (`ctr_spec.ITEM_SEMANTIC_ID`, e.g. from the
features job's quantiser) takes its cluster's embedding instead, when the cluster exists.

The ablation switches of `AktRecConfig` turn off single parts (the paper's ablation table).
`example_diagnostics` gives r (item and user gates) and alpha per impression for reporting by
popularity bucket.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from tfrs_llmrec.config.schema import ModelConfig
from tfrs_llmrec.data import ctr_spec
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, PAD_ITEM, USER_INDEX
from tfrs_llmrec.layers.cluster_embedding import ClusterGatedEmbedding
from tfrs_llmrec.layers.mlp import MLP
from tfrs_llmrec.layers.target_attention import TargetAttention
from tfrs_llmrec.losses.asymmetric_transfer import asymmetric_transfer_loss
from tfrs_llmrec.losses.orthogonality import orthogonality_loss
from tfrs_llmrec.models.rankers import CtrInputs, CtrRanker
from tfrs_llmrec.layers.initializers import glorot


def dense_clusters(semantic_ids: np.ndarray, level: int) -> Tuple[np.ndarray, int]:
    """(dense cluster index per row, number of clusters) of the semantic-ID prefixes of `level` codes."""
    prefixes = np.asarray(semantic_ids)[:, :level]
    _, inverse = np.unique(prefixes, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    return inverse, int(inverse.max()) + 1 if inverse.size else 0


def prefix_keys(semantic_ids, level: int):
    """One int64 key per row for its first `level` semantic-ID codes (codes < 2**16, level <= 3);
    works on numpy arrays and tensors alike."""
    key = 0
    for position in range(level):
        key = key * 65536 + semantic_ids[:, position]
    return key


def with_default(clusters: np.ndarray, count: int) -> Tuple[np.ndarray, int]:
    """The cluster indices with one more entry, the default ID's own new cluster."""
    return np.append(clusters, count), count + 1


def _segment_mean(values: tf.Tensor, segments: tf.Tensor, num_segments: int, keep: tf.Tensor):
    """(mean of the kept rows per segment [S, d], whether a segment has any [S])."""
    weights = tf.cast(keep, values.dtype)
    sums = tf.math.unsorted_segment_sum(values * weights[:, tf.newaxis], segments, num_segments)
    counts = tf.math.unsorted_segment_sum(weights, segments, num_segments)
    return tf.math.divide_no_nan(sums, counts[:, tf.newaxis]), counts > 0


def _key_table(keys: np.ndarray, values: np.ndarray) -> tf.lookup.StaticHashTable:
    """key -> value (the first row's, keys repeat), -1 for an unknown key."""
    keys, first = np.unique(np.asarray(keys, np.int64), return_index=True)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(keys, tf.int64), tf.constant(np.asarray(values, np.int64)[first], tf.int64)), default_value=-1)


class AktRecModel(CtrRanker):
    def __init__(self, inputs: CtrInputs, config: ModelConfig, seed: Optional[int] = None):
        akt = config.akt_rec
        super().__init__(inputs, config, pooling="attention", head=akt.head, seed=seed)
        if inputs.item_semantic_ids is None or inputs.user_semantic_ids is None:
            raise ValueError("AKT-Rec needs the items' and users' semantic IDs")
        self.akt = akt
        ranking = config.ranking
        dim = ranking.embedding_dim
        level = min(akt.cluster_level, inputs.item_semantic_ids.shape[1])
        # The default IDs (last rows, see `with_default_ids`) form clusters of their own.
        item_clusters, self.num_item_clusters = with_default(*dense_clusters(inputs.item_semantic_ids, level))
        user_clusters, self.num_user_clusters = with_default(*dense_clusters(
            inputs.user_semantic_ids, min(akt.cluster_level, inputs.user_semantic_ids.shape[1])))
        top_clusters, self.num_top_clusters = with_default(*dense_clusters(inputs.item_semantic_ids, 1))
        # A candidate the model never saw but whose semantic ID is given goes to its cluster.
        self.cluster_level = level
        codes = np.asarray(inputs.item_semantic_ids, np.int64)
        self.cluster_of_prefix = _key_table(prefix_keys(codes, level), item_clusters[:-1])
        self.top_cluster_of_code = _key_table(codes[:, 0], top_clusters[:-1])

        def cgae(num_ids, clusters, num_clusters, offset, name):
            return ClusterGatedEmbedding(
                num_ids, num_clusters, dim, cluster_of_id=clusters, activity_buckets=[inputs.activity_buckets],
                gate_units=akt.gate_units, use_individual=akt.use_individual_embedding,
                use_cluster=akt.use_cluster_embedding, use_gate=akt.use_cgae_gate,
                seed=None if seed is None else seed + offset, name=name)

        self.item_ids = cgae(inputs.num_items + 1, item_clusters, self.num_item_clusters, 30, "item_cgae")
        self.user_ids = cgae(inputs.num_users + 1, user_clusters, self.num_user_clusters, 40, "user_cgae")
        self.item_cluster = tf.constant(item_clusters, tf.int64)
        self.user_cluster = tf.constant(user_clusters, tf.int64)
        self.item_top_cluster = tf.constant(top_clusters, tf.int64)
        self.item_activity = tf.constant(np.append(inputs.item_activity, 0), tf.int64)
        self.user_activity = tf.constant(np.append(inputs.user_activity, 0), tf.int64)
        self.item_is_head = tf.constant(np.append(inputs.item_is_head, False), tf.bool)
        self.user_is_active = tf.constant(np.append(inputs.user_is_active, False), tf.bool)
        width = ranking.mlp_units[0]
        self.instance_projection = tf.keras.layers.Dense(width, kernel_initializer=glorot(seed, 50), name="instance")
        self.cluster_projection = tf.keras.layers.Dense(width, kernel_initializer=glorot(seed, 51), name="cluster")
        self.cluster_attention = TargetAttention(ranking.attention_units, activation=ranking.activation,
                                                 normalization=ranking.attention_normalization,
                                                 seed=None if seed is None else seed + 60)
        self.view_gate = MLP(akt.gate_units, 1, seed=None if seed is None else seed + 70, name="view_gate")

    # ------------------------------------------------------------------ CGAE

    def _item_components(self, item_indices):
        activity = tf.gather(self.item_activity, tf.maximum(item_indices, 0))[..., tf.newaxis]
        return self.item_ids(item_indices, activity=activity, return_components=True)

    def _user_components(self, user_indices):
        activity = tf.gather(self.user_activity, user_indices)[..., tf.newaxis]
        return self.user_ids(user_indices, activity=activity, return_components=True)

    def item_id_embedding(self, item_indices) -> tf.Tensor:
        return self._item_components(item_indices).embedding

    def user_embedding(self, user_indices, features) -> tf.Tensor:
        return self._user_components(user_indices).embedding

    def _new_item_clusters(self, features, items):
        """(CGAE cluster [B], top-level cluster [B], whether to use them [B]) for default-ID candidates
        whose semantic ID is given (ctr_spec.ITEM_SEMANTIC_ID) and falls in a known cluster."""
        codes = tf.cast(features[ctr_spec.ITEM_SEMANTIC_ID], tf.int64)[:, :self.cluster_level]
        given = tf.reduce_all(codes >= 0, axis=-1)
        clusters = self.cluster_of_prefix.lookup(prefix_keys(tf.maximum(codes, 0), self.cluster_level))
        tops = self.top_cluster_of_code.lookup(tf.maximum(codes[:, 0], 0))
        use = tf.equal(items, self.default_item) & given & (clusters >= 0) & self.akt.use_cluster_embedding
        return tf.maximum(clusters, 0), tf.maximum(tops, 0), use

    def _catalogue(self) -> tf.Tensor:
        """[I + 1, d] every item's representation (CGAE embedding + language-model projection), the
        default ID's last."""
        return self.item_embedding(tf.range(self.ctr_inputs.num_items + 1, dtype=tf.int64))

    # ------------------------------------------------------------------ HFA

    def _views(self, features, catalogue, training=False):
        """(instance view, cluster view, alpha [B]) of the impressions."""
        side = self.side_features(features)
        items, history = features[ITEM_INDEX], features[HISTORY]
        user = self.user_embedding(features[USER_INDEX], features)
        candidate = tf.gather(catalogue, items)
        top = tf.gather(self.item_top_cluster, items)
        if ctr_spec.ITEM_SEMANTIC_ID in features and self.akt.use_cluster_embedding:
            clusters, tops, use = self._new_item_clusters(features, items)
            cluster_embedding = tf.cast(self.item_ids.cluster_embedding(clusters), candidate.dtype)
            candidate = tf.where(use[:, tf.newaxis], cluster_embedding, candidate)
            top = tf.where(use, tops, top)
        history_embeddings = tf.gather(catalogue, tf.maximum(history, 0))
        valid = history != PAD_ITEM
        common = [user, side["user"]]
        instance = cluster = None
        if self.akt.use_instance_view:
            pooled = self.attention(candidate, history_embeddings, valid, training=training)
            instance = self.instance_projection(
                tf.concat(common + [candidate, side["item"], side["activity"], pooled], axis=-1))
        if self.akt.use_cluster_view:
            cluster_means, _ = _segment_mean(catalogue, self.item_top_cluster, self.num_top_clusters,
                                             tf.ones([self.ctr_inputs.num_items + 1], tf.bool))
            cluster_item = tf.gather(cluster_means, top)
            # Hard retrieval: only the history items of the candidate's top-level cluster.
            same_cluster = valid & tf.equal(tf.gather(self.item_top_cluster, tf.maximum(history, 0)),
                                            top[:, tf.newaxis])
            pooled = self.cluster_attention(cluster_item, history_embeddings, same_cluster, training=training)
            cluster = self.cluster_projection(
                tf.concat(common + [cluster_item, side["item"], side["activity"], pooled], axis=-1))
        if instance is None:
            alpha = tf.zeros(tf.shape(items), cluster.dtype)
            return cluster, cluster, alpha
        if cluster is None:
            return instance, instance, tf.ones(tf.shape(items), instance.dtype)
        if self.akt.use_hfa_gate:
            alpha = tf.sigmoid(tf.squeeze(self.view_gate(side["activity"]), axis=-1))
        else:
            alpha = tf.fill(tf.shape(items), tf.constant(0.5, instance.dtype))
        return instance, cluster, tf.cast(alpha, instance.dtype)

    def impression_vector(self, features, training=False, catalogue=None) -> tf.Tensor:
        catalogue = self._catalogue() if catalogue is None else catalogue
        instance, cluster, alpha = self._views(features, catalogue, training=training)
        return alpha[:, tf.newaxis] * instance + (1.0 - alpha[:, tf.newaxis]) * cluster

    # ------------------------------------------------------------------ losses

    def _transfer(self, embeddings, clusters, num_clusters, is_head, in_batch) -> tf.Tensor:
        """Asymmetric InfoNCE between each batch cluster's head-member and tail-member means."""
        head, has_head = _segment_mean(embeddings, clusters, num_clusters, is_head)
        tail, has_tail = _segment_mean(embeddings, clusters, num_clusters, ~is_head)
        present = tf.math.unsorted_segment_max(tf.ones_like(in_batch, tf.int32), in_batch, num_clusters) > 0
        pairs = has_head & has_tail & present
        return asymmetric_transfer_loss(head, tail, lambda_head=self.akt.lambda1, lambda_tail=self.akt.lambda2,
                                        temperature=self.akt.transfer_temperature, sample_weight=pairs)

    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        features = self.with_default_ids(features, training)
        catalogue = self._catalogue()
        outputs = self.head_outputs(self.impression_vector(features, training=training, catalogue=catalogue),
                                    training=training)
        loss = self.task(features, outputs) + self.auxiliary_losses(features, outputs, training=training)
        items, users = features[ITEM_INDEX], features[USER_INDEX]
        if self.akt.use_cluster_embedding and (self.akt.lambda1 or self.akt.lambda2):
            user_table = self.user_embedding(tf.range(self.ctr_inputs.num_users + 1, dtype=tf.int64), features)
            loss += self._transfer(catalogue, self.item_cluster, self.num_item_clusters, self.item_is_head,
                                   tf.gather(self.item_cluster, items))
            loss += self._transfer(user_table, self.user_cluster, self.num_user_clusters, self.user_is_active,
                                   tf.gather(self.user_cluster, users))
        if self.akt.orthogonality_weight and self.akt.use_cluster_embedding and self.akt.use_individual_embedding:
            item_parts, user_parts = self._item_components(items), self._user_components(users)
            loss += self.akt.orthogonality_weight * (orthogonality_loss(item_parts.cluster, item_parts.individual)
                                                     + orthogonality_loss(user_parts.cluster, user_parts.individual))
        return loss

    def example_diagnostics(self, features) -> Dict[str, tf.Tensor]:
        """Per impression: the CGAE gates r of its item and user, and the HFA view weight alpha."""
        features = self.with_default_ids(features)
        _, _, alpha = self._views(features, self._catalogue())
        return {"item_gate": self._item_components(features[ITEM_INDEX]).gate,
                "user_gate": self._user_components(features[USER_INDEX]).gate, "view_alpha": alpha}
