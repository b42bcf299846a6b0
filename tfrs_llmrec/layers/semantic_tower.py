"""Towers over frozen language-model item vectors (AlphaRec-style).

Every catalogue item has a fixed semantic vector (e.g. a text encoder's embedding of its title and
description), written by the Beam semantic-features job. Only a small MLP on top of those vectors
is trained, so:

- `SemanticItemTower` maps item indices to MLP(vector[item]). The vectors are held in a
  non-trainable variable: they are saved with checkpoints and SavedModels, never touched by an
  optimizer. `project` sends arbitrary semantic vectors through the same MLP, which is what makes
  zero-shot use possible: the items of another catalogue, or a text query encoded by the same
  language model, land in the space the model was trained in.
- `SemanticHistoryQueryTower` represents a user by the mean of their history items' semantic
  vectors, mapped by the item tower's MLP (AlphaRec's user input). It can blend an intention
  vector into that mean before the MLP, (1 - alpha) * mean_history + alpha * intention, which is
  AlphaRec's intention-aware inference: a user's stated wish, encoded by the language model,
  moves their query while their history still counts.

- `TextOnlyItemTower` embeds an item known only by its semantic vector (a new item: no ID
  embedding, no graph edges) the way a semantic model embeds its catalogue, so a cold item's text
  is all it takes to place it in the index.

AlphaRec's graph propagation on top of the projected vectors is a separate block
(`tfrs_llmrec.layers.lightgcn`). Histories are padded with PAD_ITEM (-1); padded positions never
reach a gather and are left out of the history mean.
"""

from typing import Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tfrs_llmrec.data.spec import HISTORY, PAD_ITEM
from tfrs_llmrec.layers.mlp import MLP
from tfrs_llmrec.layers.pooling import MaskedMeanPooling


def _normalize(outputs, enabled: bool):
    return tf.math.l2_normalize(outputs, axis=-1) if enabled else outputs


class SemanticItemTower(tf.keras.layers.Layer):
    """Item embedding = MLP(frozen semantic vector of the item), optionally L2-normalised.

    Args:
      item_vectors: [N, d_sem] semantic vector of catalogue item i in row i. Copied into a
        non-trainable float32 variable named `item_vectors`.
      output_dim: size of the tower's output.
      hidden_dims: hidden layer sizes of the MLP; `()` is a single linear map. AlphaRec uses
        one hidden layer with `activation="leaky_relu"`.
      activation: activation of the hidden layers (any Keras activation name).
      l2_normalize: whether `call` and `project` L2-normalise their outputs.
      seed: seeds the MLP's initial weights (see `MLP`).

    `get_config` records the catalogue's shape, not its vectors (they are weights, restored from
    a checkpoint or SavedModel); `from_config` builds the tower over a zero catalogue of that shape.
    """

    def __init__(self, item_vectors: np.ndarray, output_dim: int, hidden_dims: Sequence[int] = (),
                 activation: str = "relu", l2_normalize: bool = True, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        vectors = np.asarray(item_vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
            raise ValueError(f"item_vectors must be a non-empty [num_items, dim] array, got shape {vectors.shape}")
        self.num_items, self.semantic_dim = (int(size) for size in vectors.shape)
        self.output_dim = int(output_dim)
        self.hidden_dims = [int(units) for units in hidden_dims]
        self.activation = activation
        self.l2_normalize = l2_normalize
        self.seed = seed
        self._item_vectors = self.add_weight(
            name="item_vectors", shape=vectors.shape, dtype=tf.float32,
            initializer=tf.keras.initializers.Constant(vectors), trainable=False)
        self.mlp = MLP(self.hidden_dims, self.output_dim, activation=activation, seed=seed, name="semantic_mlp")

    @property
    def item_vectors(self) -> tf.Variable:
        """The frozen [N, d_sem] catalogue vectors."""
        return self._item_vectors

    def lookup(self, item_indices):
        """Frozen semantic vectors of `item_indices` (any shape), [..., d_sem].

        PAD_ITEM positions get a valid catalogue row (item 0) instead of failing the gather;
        callers mask them, as `SemanticHistoryQueryTower` does.
        """
        return tf.gather(self._item_vectors, tf.maximum(item_indices, 0))

    def project(self, vectors):
        """MLP (and normalisation) applied to arbitrary [..., d_sem] semantic vectors."""
        return _normalize(self.mlp(tf.cast(vectors, self._item_vectors.dtype)), self.l2_normalize)

    def call(self, item_indices):
        return self.project(self.lookup(item_indices))

    def catalogue_embeddings(self):
        """[N, output_dim] embeddings of every catalogue item, row i for item i (e.g. for an index)."""
        return self.project(self._item_vectors)

    def get_config(self):
        return {**super().get_config(), "num_items": self.num_items, "semantic_dim": self.semantic_dim,
                "output_dim": self.output_dim, "hidden_dims": self.hidden_dims, "activation": self.activation,
                "l2_normalize": self.l2_normalize, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        shape = (config.pop("num_items"), config.pop("semantic_dim"))
        return cls(np.zeros(shape, np.float32), **config)


class SemanticHistoryQueryTower(tf.keras.layers.Layer):
    """Query = item tower's MLP(masked mean of the history items' frozen vectors).

    Because users and items go through the same MLP from the same language space, the tower has
    no weights of its own: a user is placed where an item with their history's average meaning
    would be.

    Args:
      semantic_item_tower: the `SemanticItemTower` whose vectors and MLP are shared.
      l2_normalize: whether to L2-normalise the query (independent of the item tower's setting).
      intention_alpha: default alpha for `call` when intention vectors are given.

    Call with `features` (a dict holding HISTORY, [B, L] item indices padded with PAD_ITEM, or
    that tensor itself) and optionally `intention_vectors` ([B, d_sem], in the item vectors'
    language space) and `alpha` (scalar or [B], overrides `intention_alpha`). With an intention,
    the MLP sees (1 - alpha) * mean_history + alpha * intention. An empty history means zeros.
    """

    def __init__(self, semantic_item_tower: SemanticItemTower, l2_normalize: bool = True,
                 intention_alpha: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.item_tower = semantic_item_tower
        self.l2_normalize = l2_normalize
        self.intention_alpha = float(intention_alpha)
        self.pooling = MaskedMeanPooling()

    def history_vector(self, history):
        """[B, d_sem] masked mean of the history items' frozen vectors."""
        return self.pooling(self.item_tower.lookup(history), history != PAD_ITEM)

    def call(self, features, intention_vectors=None, alpha=None):
        history = features[HISTORY] if isinstance(features, dict) else features
        semantic = self.history_vector(history)
        if intention_vectors is not None:
            weight = tf.cast(self.intention_alpha if alpha is None else alpha, semantic.dtype)
            if weight.shape.rank == 1:
                weight = weight[:, tf.newaxis]
            semantic = (1.0 - weight) * semantic + weight * tf.cast(intention_vectors, semantic.dtype)
        return _normalize(self.item_tower.mlp(semantic), self.l2_normalize)

    def get_config(self):
        return {**super().get_config(), "semantic_item_tower": self.item_tower.get_config(),
                "l2_normalize": self.l2_normalize, "intention_alpha": self.intention_alpha}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        item_tower = SemanticItemTower.from_config(config.pop("semantic_item_tower"))
        return cls(item_tower, **config)


def gate_fused(gate: tf.keras.layers.Layer, raw_cf, raw_sem) -> Tuple[tf.Tensor, tf.Tensor]:
    """(L2-normalised gate(h_cf, h_sem), semantic weight) of unnormalised ID and semantic embeddings.

    The gate mixes the normalised embeddings but reads the unnormalised ones: the norm of an ID
    embedding grows with its updates, which is how the gate can tell a tail item.
    """
    fused, semantic_weight = gate(tf.math.l2_normalize(raw_cf, axis=-1), tf.math.l2_normalize(raw_sem, axis=-1),
                                  gate_inputs=(raw_cf, raw_sem))
    return tf.math.l2_normalize(fused, axis=-1), semantic_weight


class TextOnlyItemTower(tf.Module):
    """[B, d_sem] semantic vectors -> L2-normalised [B, d] embeddings of items that have nothing else.

    Args:
      mlp: the semantic tower's MLP (`SemanticItemTower.mlp`), shared, not copied.
      gate: a fusion gate (`tfrs_llmrec.layers.gated_fusion`) when the model fuses ID and semantic
        embeddings; the missing ID embedding is then zeros, an ID that never had an update, so the
        gate decides from the semantic side alone (a `ScalarGate` then returns the semantic
        embedding itself). None: the embedding is the normalised MLP output.

    Being a tf.Module that holds the MLP and the gate, a SavedModel of it saves their weights.
    """

    def __init__(self, mlp: tf.keras.layers.Layer, gate: Optional[tf.keras.layers.Layer] = None,
                 name: str = "text_only_item_tower"):
        super().__init__(name=name)
        self.mlp = mlp
        self.gate = gate

    def __call__(self, vectors) -> tf.Tensor:
        raw_sem = self.mlp(tf.cast(vectors, tf.float32))
        if self.gate is None:
            return tf.math.l2_normalize(raw_sem, axis=-1)
        return gate_fused(self.gate, tf.zeros_like(raw_sem), raw_sem)[0]
