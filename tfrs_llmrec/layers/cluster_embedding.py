"""AKT-Rec's cluster-gated adaptive embedding (CGAE) for long-tail IDs.

A tail ID has too few interactions to train its own embedding, but it shares a semantic cluster
(e.g. a semantic-ID prefix) with better-trained IDs. Every ID therefore has an individual
embedding d and reads the embedding c of its cluster, and a gate driven by the ID's activity
(interaction-count bucket, recency bucket, ...) decides how much of each to use:

    r = sigmoid(MLP([emb(bucket_1); ...; emb(bucket_n)])),    e = r * c + (1 - r) * d.

A trained gate gives inactive IDs a large r (lean on the cluster) and active ones a small r.
The layer returns c and d as well as e because AKT-Rec's losses act on them: the head-to-tail
transfer loss on cluster members and the orthogonality regulariser that keeps d from
duplicating c.

Ablations: `use_individual=False` gives e = c (r reported as 1), `use_cluster=False` gives e = d
(r reported as 0), `use_gate=False` fixes r at 0.5. Only the full layer has activity tables and
a gate network, and only it reads the activity features.
"""

from typing import NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrs_llmrec.layers.mlp import MLP
from tfrs_llmrec.layers.initializers import embedding_uniform


class ClusterGatedOutput(NamedTuple):
    """What `ClusterGatedEmbedding(..., return_components=True)` returns; shapes for ids [...]:

    embedding: e [..., dim]; gate: r [...]; cluster: c [..., dim], None with use_cluster=False;
    individual: d [..., dim], None with use_individual=False. All are 0 at padding IDs (< 0).
    """
    embedding: tf.Tensor
    gate: tf.Tensor
    cluster: Optional[tf.Tensor]
    individual: Optional[tf.Tensor]


class ClusterGatedEmbedding(tf.keras.layers.Layer):
    """e = r * c + (1 - r) * d with c the ID's cluster embedding, d its own, r an activity gate.

    Called as `cgae(ids, activity=None, return_components=False)`:
      ids: int [...] ID indices in [0, num_ids); negative IDs (PAD_ITEM) are padding and get zeros
        everywhere (embedding, gate, c and d).
      activity: int [..., n_features] activity bucket indices, feature j in
        [0, activity_buckets[j]) (values outside are clipped into range, so padding may hold
        anything). Needed only by the full layer (both sides and the gate); ignored otherwise.
      return_components: return a `ClusterGatedOutput` (e, r, c, d) instead of e alone.
    Returns e [..., dim] in the layer's compute dtype (float16 under mixed_float16), or the
    `ClusterGatedOutput`.

    Args:
      num_ids: size of the ID vocabulary.
      num_clusters: number of clusters.
      dim: embedding size of c, d and e.
      cluster_of_id: int [num_ids], the dense cluster index in [0, num_clusters) of every ID
        (e.g. the semantic-ID prefix of each item, renumbered densely). Fixed at construction;
        required unless use_cluster=False. It is part of `get_config`.
      activity_buckets: number of buckets of each activity feature.
      gate_units: hidden widths of the gate MLP (ReLU by default), which ends in a Dense(1)
        followed by a sigmoid.
      activity_dim: embedding size of each activity bucket; the gate reads their concatenation.
      gate_activation: Keras activation of the gate MLP's hidden layers.
      use_individual, use_cluster, use_gate: ablation switches (see the module docstring).
      seed: seeds the initialisers: individual table seed, cluster table seed + 1, activity
        table seed + 2, gate MLP layer i seed + 3 + i.
    """

    def __init__(self, num_ids: int, num_clusters: int, dim: int, cluster_of_id: Optional[Sequence[int]] = None,
                 activity_buckets: Sequence[int] = (), gate_units: Sequence[int] = (32,), activity_dim: int = 8,
                 gate_activation: str = "relu", use_individual: bool = True, use_cluster: bool = True,
                 use_gate: bool = True, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.num_ids = int(num_ids)
        self.num_clusters = int(num_clusters)
        self.dim = int(dim)
        self.activity_buckets = [int(buckets) for buckets in activity_buckets]
        self.gate_units = [int(units) for units in gate_units]
        self.activity_dim = int(activity_dim)
        self.gate_activation = gate_activation
        self.use_individual = bool(use_individual)
        self.use_cluster = bool(use_cluster)
        self.use_gate = bool(use_gate)
        self.seed = seed
        if not (self.use_individual or self.use_cluster):
            raise ValueError("at least one of use_individual and use_cluster must be True")
        self.cluster_of_id = None if cluster_of_id is None else self._checked_clusters(cluster_of_id)
        if self.use_cluster and self.cluster_of_id is None:
            raise ValueError("cluster_of_id is required when use_cluster=True")
        self.gated = self.use_individual and self.use_cluster and self.use_gate
        if self.gated and (not self.activity_buckets or min(self.activity_buckets) < 1):
            raise ValueError(f"the gate needs activity_buckets, each at least 1, got {self.activity_buckets}")

        self.individual_embedding = (
            tf.keras.layers.Embedding(self.num_ids, self.dim, embeddings_initializer=embedding_uniform(seed, 0),
                                      name="individual_embedding") if self.use_individual else None)
        if self.use_cluster:
            self.cluster_embedding = tf.keras.layers.Embedding(
                self.num_clusters, self.dim, embeddings_initializer=embedding_uniform(seed, 1),
                name="cluster_embedding")
            self._cluster_table = tf.constant(self.cluster_of_id, tf.int32)
        else:
            self.cluster_embedding = None
        if self.gated:
            # One table for all features; feature j's rows follow those of features 0..j-1.
            self._activity_offsets = tf.constant(np.cumsum([0] + self.activity_buckets[:-1]), tf.int32)
            self._activity_max = tf.constant(self.activity_buckets, tf.int32) - 1
            self.activity_embedding = tf.keras.layers.Embedding(
                sum(self.activity_buckets), self.activity_dim, embeddings_initializer=embedding_uniform(seed, 2),
                name="activity_embedding")
            self.gate = MLP(self.gate_units, 1, gate_activation, seed=None if seed is None else seed + 3, name="gate")
        else:
            self.activity_embedding = None
            self.gate = None

    def _checked_clusters(self, cluster_of_id) -> np.ndarray:
        clusters = np.asarray(cluster_of_id)
        if clusters.shape != (self.num_ids,) or not np.issubdtype(clusters.dtype, np.integer):
            raise ValueError(f"cluster_of_id must be {self.num_ids} integers, got shape {clusters.shape} "
                             f"of {clusters.dtype}")
        if clusters.size and (clusters.min() < 0 or clusters.max() >= self.num_clusters):
            raise ValueError(f"cluster_of_id values must lie in [0, {self.num_clusters})")
        return clusters.astype(np.int64)

    def _activity_gate(self, activity):
        activity = tf.clip_by_value(tf.cast(activity, tf.int32), 0, self._activity_max) + self._activity_offsets
        embedded = self.activity_embedding(activity)  # [..., n_features, activity_dim]
        flat = tf.reshape(embedded, tf.concat([tf.shape(activity)[:-1],
                                               [len(self.activity_buckets) * self.activity_dim]], axis=0))
        return tf.sigmoid(tf.squeeze(self.gate(flat), axis=-1))

    def call(self, ids, activity=None, return_components=False):
        ids = tf.cast(ids, tf.int32)
        valid = tf.cast(ids >= 0, self.compute_dtype)
        safe_ids = tf.maximum(ids, 0)
        individual = self.individual_embedding(safe_ids) if self.use_individual else None
        cluster = (self.cluster_embedding(tf.gather(self._cluster_table, safe_ids))
                   if self.use_cluster else None)

        if not self.use_cluster:
            gate = tf.zeros_like(valid)
            embedding = individual
        elif not self.use_individual:
            gate = tf.ones_like(valid)
            embedding = cluster
        else:
            if self.gated:
                if activity is None:
                    raise ValueError("the gated layer needs the activity features")
                gate = tf.cast(self._activity_gate(activity), self.compute_dtype)
            else:
                gate = tf.fill(tf.shape(valid), tf.constant(0.5, self.compute_dtype))
            embedding = gate[..., tf.newaxis] * cluster + (1.0 - gate[..., tf.newaxis]) * individual

        def masked(tensor):
            return None if tensor is None else tensor * valid[..., tf.newaxis]

        embedding = masked(embedding)
        if not return_components:
            return embedding
        return ClusterGatedOutput(embedding=embedding, gate=gate * valid, cluster=masked(cluster),
                                  individual=masked(individual))

    def get_config(self):
        return {**super().get_config(), "num_ids": self.num_ids, "num_clusters": self.num_clusters,
                "dim": self.dim, "cluster_of_id": None if self.cluster_of_id is None else self.cluster_of_id.tolist(),
                "activity_buckets": self.activity_buckets,
                "gate_units": self.gate_units, "activity_dim": self.activity_dim,
                "gate_activation": self.gate_activation, "use_individual": self.use_individual,
                "use_cluster": self.use_cluster, "use_gate": self.use_gate, "seed": self.seed}
