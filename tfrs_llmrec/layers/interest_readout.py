"""How a multi-interest user [B, K, d] meets one target item [B, d].

label_aware_attention is MIND's label-aware attention and ComiRec's hard readout. MIND writes the
weights as softmax_k(pow(v_k . e, p)); a real power of a negative dot product is undefined, and an
even p ranks a strongly negative interest above a neutral one. We use the temperature form

    weights = softmax_k(p * (v_k . e)),        user = sum_k weights_k v_k,

which keeps MIND's limits and is defined for every score: p = 0 is the plain mean of the
interests, and p -> infinity puts all the weight on the interest with the largest dot product.
`power=None` is that limit taken exactly (ComiRec): user = v_argmax, and gradients reach only the
selected interest (none reach the target through the selection).

TargetAwareInterestAttention is EIMF's target-aware attention over interests: the target,
projected by a bias-free Dense, is the query of a scaled dot-product softmax over the valid
interests, whose unprojected vectors are then averaged with those weights.

InterestSelfAttention lets a set of interests [B, K, d] read each other (ESIM over the explicit
interests): LayerNorm(x + MultiHeadSelfAttention(x)), each interest attending to the valid ones.

Masked interests are replaced by zeros before anything reads them and get weight exactly 0
(softmax logits are masked with the finite -1e9), so their values never matter; masked outputs
are zeros, and a row without any valid interest gives zeros, never NaN. Softmaxes run in
float32; outputs come back in the interests' (or the layer's compute) dtype.
"""

from typing import Optional, Tuple

import tensorflow as tf

from tfrs_llmrec.layers.initializers import glorot
from tfrs_llmrec.layers.sequence_encoder import MultiHeadSelfAttention

# Logit of a masked interest before the softmax; finite, so an all-masked row gives no NaN.
_MASKED_SCORE = -1e9


def label_aware_attention(interests: tf.Tensor, target: tf.Tensor,
                          power: Optional[float]) -> Tuple[tf.Tensor, tf.Tensor]:
    """Reads one user vector out of K interests for a target item.

    Args:
      interests: [B, K, d] interest vectors v_k.
      target: [B, d] target item embedding e.
      power: p >= 0 for the soft readout softmax_k(p * v_k . e) (0: mean of the interests; larger:
        closer to the argmax), or None for the hard readout (the interest with the largest dot
        product, ties going to the lowest index).
    Returns (user [B, d] in the interests' dtype, selected [B] int32 = argmax_k v_k . e).
    """
    if power is not None and power < 0:
        raise ValueError(f"power must be >= 0 or None, got {power}")
    interests = tf.convert_to_tensor(interests)
    scores = tf.einsum("bkd,bd->bk", tf.cast(interests, tf.float32), tf.cast(target, tf.float32))
    selected = tf.argmax(scores, axis=-1, output_type=tf.int32)
    if power is None:
        return tf.gather(interests, selected, axis=1, batch_dims=1), selected
    weights = tf.cast(tf.nn.softmax(float(power) * scores, axis=-1), interests.dtype)
    return tf.einsum("bk,bkd->bd", weights, interests), selected


class TargetAwareInterestAttention(tf.keras.layers.Layer):
    """Pools interests [B, K, dim] into [B, dim] by scaled dot-product attention to a target [B, d_t].

    Called as `attention(interests, target, mask=None, return_weights=False)`:
      interests: [B, K, dim] interest vectors (keys and, unprojected, values).
      target: [B, d_t] target item embedding; the query is target W (W: d_t x dim, no bias).
      mask: [B, K] boolean, True at valid interests; None means every interest is valid.
      return_weights: also return the attention weights.
    Returns the pooled vector [B, dim] in the layer's compute dtype, or `(pooled, weights)` with
    weights [B, K] float32: softmax_k(q . v_k / sqrt(dim)) over the valid interests, 0 at masked
    ones. A row without any valid interest pools to zeros.

    Args:
      dim: width of the interests (and of the projected query).
      seed: seeds the query projection's Glorot kernel.
    """

    def __init__(self, dim: int, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.seed = seed
        self.query_projection = tf.keras.layers.Dense(self.dim, use_bias=False, kernel_initializer=glorot(seed, 0),
                                                      name="query")

    def call(self, interests, target, mask=None, return_weights=False):
        interests = tf.cast(interests, self.compute_dtype)
        if interests.shape[-1] is not None and interests.shape[-1] != self.dim:
            raise ValueError(f"interests must have width {self.dim}, got {interests.shape}")
        mask = tf.ones(tf.shape(interests)[:-1], tf.bool) if mask is None else tf.cast(mask, tf.bool)
        interests = tf.where(mask[..., tf.newaxis], interests, tf.zeros_like(interests))
        query = self.query_projection(tf.cast(target, self.compute_dtype))
        scores = tf.cast(tf.einsum("bkd,bd->bk", interests, query), tf.float32) / tf.sqrt(float(self.dim))
        weights = tf.where(mask, tf.nn.softmax(tf.where(mask, scores, _MASKED_SCORE), axis=-1), 0.0)
        pooled = tf.einsum("bk,bkd->bd", tf.cast(weights, self.compute_dtype), interests)
        return (pooled, weights) if return_weights else pooled

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "seed": self.seed}


class InterestSelfAttention(tf.keras.layers.Layer):
    """One post-norm self-attention block over a set of interests [B, K, dim].

    Called as `block(interests, mask=None)`:
      interests: [B, K, dim] interest vectors.
      mask: [B, K] boolean, True at valid interests; None means every interest is valid.
    Returns LayerNorm(x + MultiHeadSelfAttention(x)) [B, K, dim] in the layer's compute dtype,
    every interest attending to the valid ones only; zeros at masked interests.

    Args:
      dim: width of the interests (dim % num_heads == 0).
      num_heads: attention heads.
      seed: seeds the attention's query, key, value and output kernels (offsets 0..3).
    """

    def __init__(self, dim: int, num_heads: int = 1, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.num_heads = int(num_heads)
        self.seed = seed
        self.attention = MultiHeadSelfAttention(self.dim, self.num_heads, seed=seed, name="attention")
        self.norm = tf.keras.layers.LayerNormalization(epsilon=1e-6, name="norm")

    def call(self, interests, mask=None):
        interests = tf.cast(interests, self.compute_dtype)
        mask = tf.ones(tf.shape(interests)[:-1], tf.bool) if mask is None else tf.cast(mask, tf.bool)
        valid = mask[..., tf.newaxis]
        interests = tf.where(valid, interests, tf.zeros_like(interests))
        outputs = self.norm(interests + self.attention(interests, mask[:, tf.newaxis, :]))
        return tf.where(valid, outputs, tf.zeros_like(outputs))

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "num_heads": self.num_heads, "seed": self.seed}
