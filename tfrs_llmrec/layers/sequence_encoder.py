"""SASRec's causal self-attention stack over a behaviour sequence, and its masked multi-head attention.

Histories are stored most recent first: position 0 is the latest behaviour, padding sits at the
end. SASRec lets a position look only backwards in time, which in this layout means towards
larger indices: position i attends to the valid positions j >= i (itself and older behaviours).
Position 0 therefore sees the whole history and its output is the user representation; position
i's output summarises the history as it stood i behaviours ago (SASRec trains every position to
predict the behaviour that followed it).

Each block is the pre-norm form of the SASRec paper, g(x) = x + g(LayerNorm(x)) for the
self-attention and for the point-wise feed-forward network ReLU(x W1 + b1) W2 + b2; dropout sits
on the attention weights and after each feed-forward Dense, as in SASRec's implementations. The
learned positional embedding is indexed by recency (position 0 = most recent), so it encodes
"how long ago", whatever the history's length. SASRec scales the item embeddings by sqrt(d)
before adding positions; that belongs to the caller's embedding lookup.

Padding never leaks: padded inputs are replaced by zeros before anything reads them, no valid
position attends to a padded one, and padded outputs are zeroed. Masked attention logits are
the finite -1e9 and the weights of disallowed keys are then set to exactly 0, so a query with
nothing to attend to (a padded position, an all-padding row) gets zero weights, never NaN.
"""

from typing import Optional

import tensorflow as tf

from tfrs_llmrec.layers.initializers import embedding_uniform, glorot
from tfrs_llmrec.layers.positions import checked_positions

# Logit of a disallowed key before the softmax; finite, so a query without any key gives no NaN.
_MASKED_SCORE = -1e9
# SASRec's layer-norm epsilon (the statistics are computed in float32 even under mixed precision).
_LAYER_NORM_EPSILON = 1e-8
# Seed offsets each encoder block takes: query, key, value and output kernels, then two FFN kernels.
_SEEDS_PER_BLOCK = 6


def _offset(seed: Optional[int], offset: int) -> Optional[int]:
    return None if seed is None else seed + offset


class MultiHeadSelfAttention(tf.keras.layers.Layer):
    """Scaled dot-product self-attention with `num_heads` heads and a boolean attention mask.

    Called as `attention(inputs, attention_mask, training=None)`:
      inputs: [B, N, d_in] vectors (behaviours, interests, ...).
      attention_mask: boolean, broadcastable to [B, N, N]; True where query i may attend to key j
        (e.g. [B, 1, N] for a key-padding mask).
      training: applies dropout to the attention weights.
    Returns [B, N, dim] in the layer's compute dtype: the heads' weighted sums of the projected
    values, concatenated and projected. A query with no allowed key gets all-zero weights, so its
    output is the output projection's bias.

    Args:
      dim: model width; split evenly over the heads (dim % num_heads == 0).
      num_heads: number of attention heads.
      dropout: dropout rate on the attention weights.
      seed: seeds the Glorot kernels of the query, key, value and output projections (offsets
        0..3, so they do not start equal); biases start at 0.
    """

    def __init__(self, dim: int, num_heads: int = 1, dropout: float = 0.0, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim ({dim}) must be a positive multiple of num_heads ({num_heads})")
        self.dim = int(dim)
        self.num_heads = int(num_heads)
        self.dropout = float(dropout)
        self.seed = seed
        self.query = tf.keras.layers.Dense(self.dim, kernel_initializer=glorot(seed, 0), name="query")
        self.key = tf.keras.layers.Dense(self.dim, kernel_initializer=glorot(seed, 1), name="key")
        self.value = tf.keras.layers.Dense(self.dim, kernel_initializer=glorot(seed, 2), name="value")
        self.output_projection = tf.keras.layers.Dense(self.dim, kernel_initializer=glorot(seed, 3), name="output")
        self.attention_dropout = tf.keras.layers.Dropout(self.dropout)

    def _split_heads(self, vectors):
        """[B, N, dim] -> [B, heads, N, dim / heads]."""
        shape = tf.shape(vectors)
        vectors = tf.reshape(vectors, [shape[0], shape[1], self.num_heads, self.dim // self.num_heads])
        return tf.transpose(vectors, [0, 2, 1, 3])

    def call(self, inputs, attention_mask, training=None):
        inputs = tf.cast(inputs, self.compute_dtype)
        queries = self._split_heads(self.query(inputs))
        keys = self._split_heads(self.key(inputs))
        values = self._split_heads(self.value(inputs))
        scale = tf.math.rsqrt(tf.cast(self.dim // self.num_heads, tf.float32))
        # float32 softmax: float16 loses the small weights of long sequences.
        scores = tf.cast(tf.einsum("bhid,bhjd->bhij", queries, keys), tf.float32) * scale
        allowed = tf.cast(attention_mask, tf.bool)[:, tf.newaxis]  # a heads axis
        weights = tf.where(allowed, tf.nn.softmax(tf.where(allowed, scores, _MASKED_SCORE), axis=-1), 0.0)
        weights = self.attention_dropout(tf.cast(weights, self.compute_dtype), training=training)
        context = tf.transpose(tf.einsum("bhij,bhjd->bhid", weights, values), [0, 2, 1, 3])
        shape = tf.shape(context)
        return self.output_projection(tf.reshape(context, [shape[0], shape[1], self.dim]))

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "num_heads": self.num_heads, "dropout": self.dropout,
                "seed": self.seed}


class _CausalBlock(tf.keras.layers.Layer):
    """One SASRec block: x + attention(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, dim: int, num_heads: int, dropout: float, seed: Optional[int], **kwargs):
        super().__init__(**kwargs)
        self.attention_norm = tf.keras.layers.LayerNormalization(epsilon=_LAYER_NORM_EPSILON, name="attention_norm")
        self.attention = MultiHeadSelfAttention(dim, num_heads, dropout, seed=seed, name="attention")
        self.feed_forward_norm = tf.keras.layers.LayerNormalization(epsilon=_LAYER_NORM_EPSILON,
                                                                    name="feed_forward_norm")
        self.hidden = tf.keras.layers.Dense(dim, activation="relu", kernel_initializer=glorot(seed, 4), name="hidden")
        self.hidden_dropout = tf.keras.layers.Dropout(dropout)
        self.projection = tf.keras.layers.Dense(dim, kernel_initializer=glorot(seed, 5), name="projection")
        self.projection_dropout = tf.keras.layers.Dropout(dropout)

    def call(self, inputs, attention_mask, training=None):
        outputs = inputs + self.attention(self.attention_norm(inputs), attention_mask, training=training)
        hidden = self.hidden_dropout(self.hidden(self.feed_forward_norm(outputs)), training=training)
        return outputs + self.projection_dropout(self.projection(hidden), training=training)


class CausalSelfAttentionEncoder(tf.keras.layers.Layer):
    """SASRec's encoder: contextualises a most-recent-first behaviour sequence [B, L, d].

    Called as `encoder(item_embeddings, mask, training=None)`:
      item_embeddings: [B, L, dim] behaviour embeddings, most recent first, L <= max_length (the
        positional embeddings of positions 0..L-1 are used).
      mask: [B, L] boolean, True at real behaviours.
      training: enables dropout (on the inputs, the attention weights and in the FFNs).
    Returns [B, L, dim] in the layer's compute dtype, zeros at padded positions. Output position 0
    (which attends to the whole history) is the user representation.

    Args:
      max_length: size of the positional-embedding table (the longest history).
      dim: embedding width d; also the width of the attention and of the FFN's hidden layer.
      num_blocks: number of self-attention blocks.
      num_heads: attention heads per block (dim % num_heads == 0).
      dropout: dropout rate everywhere dropout applies.
      seed: seeds the positional embedding (uniform, offset 0) and the Glorot kernels, block b
        taking offsets 1 + 6b .. 6 + 6b; biases start at 0, layer norms at the identity.
    """

    def __init__(self, max_length: int, dim: int, num_blocks: int = 2, num_heads: int = 1, dropout: float = 0.2,
                 seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        if max_length < 1 or num_blocks < 1:
            raise ValueError(f"max_length and num_blocks must be positive, got {max_length} and {num_blocks}")
        self.max_length = int(max_length)
        self.dim = int(dim)
        self.num_blocks = int(num_blocks)
        self.num_heads = int(num_heads)
        self.dropout = float(dropout)
        self.seed = seed
        self.position_embedding = tf.keras.layers.Embedding(self.max_length, self.dim,
                                                            embeddings_initializer=embedding_uniform(seed, 0),
                                                            name="position_embedding")
        self.input_dropout = tf.keras.layers.Dropout(self.dropout)
        self.blocks = [_CausalBlock(self.dim, self.num_heads, self.dropout, _offset(seed, 1 + _SEEDS_PER_BLOCK * index),
                                    name=f"block_{index}")
                       for index in range(self.num_blocks)]
        self.final_norm = tf.keras.layers.LayerNormalization(epsilon=_LAYER_NORM_EPSILON, name="final_norm")

    def call(self, item_embeddings, mask, training=None):
        item_embeddings = tf.cast(item_embeddings, self.compute_dtype)
        length = tf.shape(item_embeddings)[1]
        positions = checked_positions(length, self.max_length)
        mask = tf.cast(mask, tf.bool)
        valid = mask[..., tf.newaxis]
        inputs = tf.where(valid, item_embeddings, tf.zeros_like(item_embeddings))
        outputs = self.input_dropout(inputs + tf.cast(self.position_embedding(positions), self.compute_dtype),
                                     training=training)
        # Query i may read key j when j is i or older (j >= i) and j is a real behaviour.
        not_newer = positions[tf.newaxis, :] >= positions[:, tf.newaxis]  # [L, L], indexed [i, j]
        attention_mask = tf.logical_and(not_newer[tf.newaxis], mask[:, tf.newaxis, :])
        for block in self.blocks:
            outputs = block(outputs, attention_mask, training=training)
        outputs = self.final_norm(outputs)
        return tf.where(valid, outputs, tf.zeros_like(outputs))

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length, "dim": self.dim,
                "num_blocks": self.num_blocks, "num_heads": self.num_heads, "dropout": self.dropout,
                "seed": self.seed}
