"""Retrieval task: in-batch plus globally sampled negatives, temperature, logQ correction, and
optionally every replica's positives as negatives (cross-replica negatives)."""

from typing import Callable, Literal, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrs_llmrec.losses.sampled_softmax import sampled_softmax_loss


class SampledRetrievalTask(tf.keras.layers.Layer):
    """Computes the sampled-softmax loss for a batch of (query, positive item) pairs.

    `item_train_counts` gives the in-batch sampling distribution (positives arrive in proportion
    to their training frequency); global negatives come from `negative_sampler`. The logQ term of
    an item is log(B * p_batch(item) + S * p_sampler(item)), its expected count among the B + S
    candidates.

    With `replicas` given (cross-replica negatives), the candidates are the positive IDs of every
    replica's rows (all-gathered, then embedded locally: replicas hold identical weights, so this
    equals embedding them where they came from) plus the shared sampled negatives, so N replicas
    with batch B each see exactly the candidates of one process with batch N*B.
    """

    def __init__(self, item_train_counts: Sequence[int], temperature: float = 0.05,
                 num_sampled_negatives: int = 0, negative_sampler: Literal["uniform", "popularity"] = "uniform",
                 logq_correction: bool = True, remove_accidental_hits: bool = True, hardness: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        counts = np.asarray(item_train_counts, dtype=np.float64)
        if counts.ndim != 1 or counts.size == 0 or counts.sum() <= 0:
            raise ValueError("item_train_counts must be a non-empty vector with a positive sum")
        self.num_items = int(counts.size)
        self.temperature = temperature
        self.num_sampled_negatives = num_sampled_negatives
        self.negative_sampler = negative_sampler
        self.logq_correction = logq_correction
        self.remove_accidental_hits = remove_accidental_hits
        # REMI's interest-aware hard negatives (losses.sampled_softmax); 0: off.
        self.hardness = hardness
        batch_probability = counts / counts.sum()
        sampler_probability = (batch_probability if negative_sampler == "popularity"
                               else np.full_like(batch_probability, 1.0 / counts.size))
        self._batch_probability = tf.constant(batch_probability, tf.float32)
        self._sampler_probability = tf.constant(sampler_probability, tf.float32)
        # Unseen items have p_batch = 0; the floor keeps log q finite when they are sampled.
        self._log_floor = tf.constant(1e-12, tf.float32)
        self._sampler_logits = tf.constant(np.log(np.maximum(sampler_probability, 1e-30))[np.newaxis, :],
                                           tf.float32)

    def sample_negatives(self, seed: tf.Tensor) -> tf.Tensor:
        """`num_sampled_negatives` item IDs drawn with the stateless-RNG `seed` ([2] int)."""
        if self.negative_sampler == "uniform":
            return tf.random.stateless_uniform([self.num_sampled_negatives], seed, 0, self.num_items,
                                               dtype=tf.int64)
        return tf.random.stateless_categorical(self._sampler_logits, self.num_sampled_negatives, seed,
                                               dtype=tf.int64)[0]

    def log_q(self, candidate_ids: tf.Tensor, batch_size: tf.Tensor) -> tf.Tensor:
        expected = (tf.cast(batch_size, tf.float32) * tf.gather(self._batch_probability, candidate_ids)
                    + float(self.num_sampled_negatives) * tf.gather(self._sampler_probability, candidate_ids))
        return tf.math.log(tf.maximum(expected, self._log_floor))

    def call(self, query_embeddings: tf.Tensor, positive_ids: tf.Tensor,
             embed_items: Callable[[tf.Tensor], tf.Tensor], positive_embeddings=None, sample_weight=None,
             seed: Optional[tf.Tensor] = None, replicas=None):
        """`seed` seeds the sampled negatives (required when there are any); `replicas` (a
        `models.base.Replicas`) turns on cross-replica negatives."""
        positive_ids = tf.cast(positive_ids, tf.int64)
        label_offset = 0
        in_batch_ids = positive_ids
        if replicas is not None and replicas.num_replicas > 1:
            in_batch_ids = replicas.all_gather(positive_ids)
            label_offset = replicas.replica_index() * tf.shape(positive_ids)[0]
            positive_embeddings = None
        candidate_ids = in_batch_ids
        if self.num_sampled_negatives > 0:
            if seed is None:
                raise ValueError("sampled negatives need a seed")
            candidate_ids = tf.concat([in_batch_ids, self.sample_negatives(seed)], axis=0)
            candidate_embeddings = embed_items(candidate_ids)
        else:
            candidate_embeddings = (positive_embeddings if positive_embeddings is not None
                                    else embed_items(candidate_ids))
        log_q = self.log_q(candidate_ids, tf.shape(in_batch_ids)[0]) if self.logq_correction else None
        return sampled_softmax_loss(query_embeddings, candidate_embeddings, candidate_ids, positive_ids,
                                    temperature=self.temperature, candidate_log_q=log_q,
                                    remove_accidental_hits=self.remove_accidental_hits,
                                    sample_weight=sample_weight, label_offset=label_offset,
                                    hardness=self.hardness)
