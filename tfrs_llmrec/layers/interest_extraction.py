"""Multi-interest extraction: K interest vectors from one behaviour sequence [B, L, d].

CapsuleInterestExtractor is MIND's behaviour-to-interest (B2I) dynamic routing. A bilinear map
S shared by all interests maps each behaviour e_l to ê_l = S e_l; routing logits b_{k,l} decide
how much of behaviour l goes to interest k, and each round

    w_{k,l} = softmax_k(b_{k,l})           (each behaviour splits over the interests)
    z_k     = sum_l w_{k,l} ê_l
    v_k     = squash(z_k) = |z_k|^2 / (1 + |z_k|^2) * z_k / |z_k|
    b_{k,l} += v_k . ê_l                    (behaviours move to the interests they agree with)

The logits start from a fixed N(0, 1) draw, as in MIND (all-zero logits would give every interest
the same vector and routing could never separate them). The draw is not trained, depends only on
the layer's routing seed, and is shared by all users. Position l's logits are the l-th row of a
counter-based (Philox) stateless draw of shape [L, K], so they do not depend on how much padding
the batch carries. Like MIND's and ComiRec-DR's implementations, only the last round passes
gradients: the earlier rounds read ê through stop_gradient, so routing steers the forward pass
and S is trained through the final weighted sum.

SelfAttentiveInterests is ComiRec-SA: K attention heads over the behaviours,

    A = softmax_l(W2 tanh(W1 (h_l + p_l)))   [K, L],      V = A H   [K, d],

where p_l is an optional learned embedding of position l (most recent first, so it encodes
recency). As in ComiRec, positions only steer the attention: the interests are averages of the
behaviour embeddings themselves, so they stay in the item-embedding space they are matched in.

Conventions: histories are most recent first with padding at the end, but any mask works.
Padded behaviours are replaced by zeros before anything reads them and get weight exactly 0
(softmax logits are masked with the finite -1e9), so their values never matter, and a row without
any valid behaviour gives all-zero interests. Routing and attention run in float32 even under
mixed precision; the interests come back in the layer's compute dtype.
"""

from typing import Optional

import tensorflow as tf

from tfrs_llmrec.layers.initializers import embedding_uniform, glorot
from tfrs_llmrec.layers.positions import checked_positions

# Logit of a padded position before a softmax over positions; finite, so an empty row gives no NaN.
_MASKED_SCORE = -1e9


def squash(vectors: tf.Tensor, axis: int = -1) -> tf.Tensor:
    """The capsule non-linearity |z|^2 / (1 + |z|^2) * z / |z| along `axis`.

    Keeps the direction and maps the norm into [0, 1). Written as z * |z|^2 / (1 + |z|^2) / |z|
    with |z| replaced by 1 where z = 0, so a zero vector squashes to 0 with a finite gradient.
    """
    squared_norm = tf.reduce_sum(tf.square(vectors), axis=axis, keepdims=True)
    safe_norm = tf.sqrt(tf.where(squared_norm > 0, squared_norm, tf.ones_like(squared_norm)))
    return vectors * (squared_norm / (1.0 + squared_norm) / safe_norm)


class CapsuleInterestExtractor(tf.keras.layers.Layer):
    """MIND's B2I dynamic routing: behaviours [B, L, d_in] -> K interest capsules [B, K, dim].

    Called as `extractor(embeddings, mask, training=None, return_routing=False)`:
      embeddings: [B, L, d_in] behaviour embeddings.
      mask: [B, L] boolean, True at real behaviours.
      training: unused (routing is the same in training and inference).
      return_routing: also return the last round's routing weights.
    Returns the interests [B, K, dim] in the layer's compute dtype (each of norm < 1), or
    `(interests, routing)` with routing [B, K, L] float32: over the interests, each valid
    behaviour's weights sum to 1; 0 at padded positions.

    Args:
      num_interests: K, the number of interest capsules.
      dim: width of the capsules (and of the bilinear map S, a Dense without bias).
      iterations: routing rounds (MIND: 3).
      seed: seeds S's Glorot kernel (offset 0) and the routing-logit draw (stateless seed
        [seed, 1]). Without a seed the routing seed is drawn at random when the layer is built.
        Either way it is kept in a non-trainable int64 weight, so a checkpoint restores the same
        routing initialisation.
    """

    def __init__(self, num_interests: int, dim: int, iterations: int = 3, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        if num_interests < 1 or iterations < 1:
            raise ValueError(f"num_interests and iterations must be positive, got {num_interests} and {iterations}")
        self.num_interests = int(num_interests)
        self.dim = int(dim)
        self.iterations = int(iterations)
        self.seed = seed
        self.bilinear = tf.keras.layers.Dense(self.dim, use_bias=False, kernel_initializer=glorot(seed, 0),
                                              name="bilinear")

    def build(self, input_shape):
        initializer = (tf.keras.initializers.RandomUniform(0, 2 ** 31 - 1) if self.seed is None
                       else tf.keras.initializers.Constant([self.seed, 1]))
        self.routing_seed = self.add_weight(name="routing_seed", shape=[2], dtype=tf.int64,
                                            initializer=initializer, trainable=False)
        super().build(input_shape)

    def initial_logits(self, length) -> tf.Tensor:
        """The fixed routing logits b at round 0, [K, length] float32."""
        draw = tf.random.stateless_normal([length, self.num_interests], seed=self.routing_seed, alg="philox")
        return tf.transpose(draw)

    def call(self, embeddings, mask, training=None, return_routing=False):
        embeddings = tf.cast(embeddings, self.compute_dtype)
        mask = tf.cast(mask, tf.bool)
        embeddings = tf.where(mask[..., tf.newaxis], embeddings, tf.zeros_like(embeddings))
        mapped = tf.cast(self.bilinear(embeddings), tf.float32)  # ê, [B, L, dim]; 0 at padding
        frozen = tf.stop_gradient(mapped)
        valid = mask[:, tf.newaxis, :]  # [B, 1, L]
        logits = self.initial_logits(tf.shape(mapped)[1])[tf.newaxis]  # [1, K, L]
        for iteration in range(self.iterations):
            last = iteration == self.iterations - 1
            behaviours = mapped if last else frozen
            routing = tf.where(valid, tf.nn.softmax(logits, axis=1), 0.0)  # [B, K, L]
            interests = squash(tf.einsum("bkl,bld->bkd", routing, behaviours))
            if not last:
                logits = logits + tf.einsum("bkd,bld->bkl", interests, behaviours)
        interests = tf.cast(interests, self.compute_dtype)
        return (interests, routing) if return_routing else interests

    def get_config(self):
        return {**super().get_config(), "num_interests": self.num_interests, "dim": self.dim,
                "iterations": self.iterations, "seed": self.seed}


class SelfAttentiveInterests(tf.keras.layers.Layer):
    """ComiRec-SA: K self-attentive heads pool behaviours [B, L, dim] into interests [B, K, dim].

    Called as `extractor(embeddings, mask, training=None, return_attention=False)`:
      embeddings: [B, L, dim] behaviour embeddings, most recent first, L <= max_length.
      mask: [B, L] boolean, True at real behaviours.
      training: unused (the layer has no dropout).
      return_attention: also return the attention matrix.
    Returns the interests [B, K, dim] in the layer's compute dtype, or `(interests, attention)`
    with attention [B, K, L] float32: each row sums to 1 over the valid positions, 0 at padded
    ones (all 0 for a row without any valid behaviour, whose interests are then zeros).

    Args:
      num_interests: K, the number of attention heads (interests).
      dim: width of the behaviour embeddings.
      max_length: size of the positional-embedding table (unused without positions).
      hidden_factor: W1 maps dim -> hidden_factor * dim (ComiRec: 4).
      use_positions: add a learned positional embedding before scoring.
      seed: seeds the positional embedding (uniform, offset 0) and the Glorot kernels of W1
        (offset 1) and W2 (offset 2). W1's bias starts at 0; W2 has no bias, which a softmax over
        positions would cancel anyway.
    """

    def __init__(self, num_interests: int, dim: int, max_length: int, hidden_factor: int = 4,
                 use_positions: bool = True, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        if num_interests < 1 or hidden_factor < 1:
            raise ValueError(f"num_interests and hidden_factor must be positive, got {num_interests} and "
                             f"{hidden_factor}")
        self.num_interests = int(num_interests)
        self.dim = int(dim)
        self.max_length = int(max_length)
        self.hidden_factor = int(hidden_factor)
        self.use_positions = bool(use_positions)
        self.seed = seed
        self.position_embedding = (tf.keras.layers.Embedding(self.max_length, self.dim,
                                                             embeddings_initializer=embedding_uniform(seed, 0),
                                                             name="position_embedding")
                                   if self.use_positions else None)
        self.hidden = tf.keras.layers.Dense(self.hidden_factor * self.dim, activation="tanh",
                                            kernel_initializer=glorot(seed, 1), name="hidden")
        self.heads = tf.keras.layers.Dense(self.num_interests, use_bias=False, kernel_initializer=glorot(seed, 2),
                                           name="heads")

    def call(self, embeddings, mask, training=None, return_attention=False):
        embeddings = tf.cast(embeddings, self.compute_dtype)
        mask = tf.cast(mask, tf.bool)
        embeddings = tf.where(mask[..., tf.newaxis], embeddings, tf.zeros_like(embeddings))
        scored = embeddings
        if self.position_embedding is not None:
            length = tf.shape(embeddings)[1]
            positions = checked_positions(length, self.max_length)
            scored = embeddings + tf.cast(self.position_embedding(positions), self.compute_dtype)
        logits = tf.transpose(tf.cast(self.heads(self.hidden(scored)), tf.float32), [0, 2, 1])  # [B, K, L]
        valid = mask[:, tf.newaxis, :]
        attention = tf.where(valid, tf.nn.softmax(tf.where(valid, logits, _MASKED_SCORE), axis=-1), 0.0)
        interests = tf.einsum("bkl,bld->bkd", tf.cast(attention, self.compute_dtype), embeddings)
        return (interests, attention) if return_attention else interests

    def get_config(self):
        return {**super().get_config(), "num_interests": self.num_interests, "dim": self.dim,
                "max_length": self.max_length, "hidden_factor": self.hidden_factor,
                "use_positions": self.use_positions, "seed": self.seed}
