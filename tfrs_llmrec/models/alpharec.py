"""AlphaRec ("Language Representations Can Be What Recommenders Need", Sheng et al., 2024).

There are no ID embeddings. An item's input is its frozen language-model vector; a user's input
is the mean of their distinct training items' vectors. Both go through
the same trainable MLP (the `SemanticItemTower`'s), then LightGCN propagation over the normalised
user-item training graph (layer mean), and the model trains with InfoNCE on cosine similarities.

Because a user is only a mean of item vectors plus graph neighbours, any user can be folded in
at serving time from a history alone (`fold_in_queries`, `serving_query_tower`): layer 0 is the
MLP of the history mean, optionally blended with an intention vector (the text encoder's vector
of what the user asks for), and layer k >= 1 aggregates the history items' layer k - 1 exactly as
LightGCN would for a node whose neighbours are those items. For a training user whose history is
their training items, the fold-in query equals the propagated one.

Zero-shot: the MLP is the only trained part, and it works on any catalogue embedded by the same
language model, so `restore_semantic_mlp` takes it from a model trained on another dataset.
"""

from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from tfrs_llmrec.config.schema import ModelConfig
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, PAD_ITEM, USER_INDEX
from tfrs_llmrec.layers.lightgcn import LightGCNPropagation, normalized_adjacency, split_user_item
from tfrs_llmrec.layers.mlp import MLP
from tfrs_llmrec.layers.semantic_tower import SemanticHistoryQueryTower, SemanticItemTower, TextOnlyItemTower
from tfrs_llmrec.losses.info_nce import info_nce_loss
from tfrs_llmrec.models.base import RecommenderModel


def unique_history(history) -> tf.Tensor:
    """[B, L] history with padding and repeats of an earlier position set to PAD_ITEM, so each
    row holds the user's graph neighbours once."""
    history = tf.cast(history, tf.int64)
    positions = tf.range(tf.shape(history)[1])
    earlier = positions[:, tf.newaxis] > positions[tf.newaxis, :]  # [L, L]: column j comes before row l
    repeated = tf.reduce_any(tf.equal(history[:, :, tf.newaxis], history[:, tf.newaxis, :]) & earlier, axis=-1)
    return tf.where(repeated, tf.constant(PAD_ITEM, tf.int64), history)


def _fold_in(history_tower: SemanticHistoryQueryTower, history, intention_vectors, alpha,
             item_layers: Sequence[tf.Tensor], item_inverse_sqrt_degree: tf.Tensor,
             layer_weights: Sequence[float]) -> tf.Tensor:
    """L2-normalised LightGCN output of a new user node linked to the history's items.

    item_layers[k] is the items' layer-k output on the training graph (k = 0..K-1): the user's
    layer k + 1 aggregates it with the edge weights Â[u, i] = 1 / sqrt(|H| deg(i)).
    """
    history = unique_history(history)
    layer_0 = history_tower(history, intention_vectors=intention_vectors, alpha=alpha)
    is_item = tf.cast(history != PAD_ITEM, layer_0.dtype)
    items = tf.maximum(history, 0)
    history_size = tf.reduce_sum(is_item, axis=1, keepdims=True)
    # divide_no_nan: an empty history has no edges, so only its layer 0 remains.
    edge_weights = is_item * tf.math.divide_no_nan(tf.gather(item_inverse_sqrt_degree, items), tf.sqrt(history_size))
    query = layer_weights[0] * layer_0
    for weight, item_layer in zip(layer_weights[1:], item_layers):
        query += weight * tf.einsum("bl,bld->bd", edge_weights, tf.gather(item_layer, items))
    return tf.math.l2_normalize(query, axis=-1)


class AlphaRecFoldInTower(tf.Module):
    """Inductive AlphaRec query tower with the training graph's item side frozen into variables.

    Call it as `tower(features, intention_vectors=None, alpha=None)` with `features` a dict holding
    HISTORY ([B, L] int64 padded with PAD_ITEM; USER_INDEX is ignored, so unseen users work) or
    that tensor; intention blending is `SemanticHistoryQueryTower`'s. Returns L2-normalised [B, d].
    Being a tf.Module, a SavedModel holding it saves the MLP, the item vectors and the snapshots.
    """

    def __init__(self, history_tower: SemanticHistoryQueryTower, item_layers: Sequence[tf.Tensor],
                 item_inverse_sqrt_degree: tf.Tensor, layer_weights: Sequence[float], name: str = "alpharec_fold_in"):
        super().__init__(name=name)
        self.history_tower = history_tower
        self.item_layers = [tf.Variable(layer, trainable=False, name=f"item_layer_{k}")
                            for k, layer in enumerate(item_layers)]
        self.item_inverse_sqrt_degree = tf.Variable(item_inverse_sqrt_degree, trainable=False,
                                                    name="item_inverse_sqrt_degree")
        self.layer_weights = tuple(float(weight) for weight in layer_weights)

    def __call__(self, features, intention_vectors=None, alpha=None) -> tf.Tensor:
        history = features[HISTORY] if isinstance(features, dict) else features
        return _fold_in(self.history_tower, history, intention_vectors, alpha, self.item_layers,
                        self.item_inverse_sqrt_degree, self.layer_weights)


def mean_item_vectors(item_vectors: np.ndarray, num_users: int, edge_users: np.ndarray,
                      edge_items: np.ndarray) -> np.ndarray:
    """[U, d_sem]: each user's mean over the vectors of their (distinct) edge items; zeros without edges."""
    sums = np.zeros((num_users, item_vectors.shape[1]), np.float64)
    np.add.at(sums, edge_users, item_vectors[edge_items])
    counts = np.bincount(edge_users, minlength=num_users)[:, np.newaxis]
    return (sums / np.maximum(counts, 1)).astype(np.float32)


class AlphaRecModel(RecommenderModel):
    """AlphaRec over frozen `item_vectors` [I, d_sem] for `num_users` users, with the graph of the
    training interactions `train_users`/`train_items`; each user's frozen input vector is the mean
    of their distinct training items' vectors, as a fold-in query computes it from a history.

    Trains only the semantic MLP. Negatives: `config.num_sampled_negatives` items drawn uniformly
    and shared by the batch (and by every replica), or, when that is 0, the batch's other positives.
    Every replica propagates the whole graph each step.
    """

    serves_text_intentions = True

    def __init__(self, item_vectors: np.ndarray, num_users: int, train_users: np.ndarray,
                 train_items: np.ndarray, config: ModelConfig, seed: Optional[int] = None):
        super().__init__(seed=seed)
        item_vectors = np.asarray(item_vectors, np.float32)
        if item_vectors.ndim != 2:
            raise ValueError(f"item_vectors must be a [num_items, d_sem] array, got shape {item_vectors.shape}")
        self.num_users, self.num_items = num_users, len(item_vectors)
        edges = np.unique(np.asarray(train_users, np.int64) * self.num_items + np.asarray(train_items, np.int64))
        edge_users, edge_items = edges // self.num_items, edges % self.num_items
        user_vectors = mean_item_vectors(item_vectors, num_users, edge_users, edge_items)
        self.item_tower = SemanticItemTower(item_vectors, config.tower.dim, config.semantic.hidden_dims,
                                            activation=config.semantic.activation, l2_normalize=False, seed=seed)
        self.history_tower = SemanticHistoryQueryTower(self.item_tower, l2_normalize=False,
                                                       intention_alpha=config.alpharec.intention_alpha)
        self.user_vectors = self.add_weight(name="user_vectors", shape=user_vectors.shape, dtype=tf.float32,
                                            initializer=tf.keras.initializers.Constant(user_vectors), trainable=False)
        self.adjacency = normalized_adjacency(self.num_users, self.num_items, train_users, train_items)
        item_degree = np.bincount(edge_items, minlength=self.num_items)
        # An item without training edges counts as having the folded-in user as its only neighbour.
        self.item_inverse_sqrt_degree = tf.constant(1.0 / np.sqrt(np.maximum(item_degree, 1)), tf.float32)
        self.propagation = LightGCNPropagation(config.lightgcn_layers)
        self.temperature = config.temperature
        self.num_sampled_negatives = config.num_sampled_negatives
        self.negatives_site = self.new_sampling_site()

    def _initial_embeddings(self) -> tf.Tensor:
        """E_0 [(U+I), d]: users and items through the one MLP."""
        return self.item_tower.project(tf.concat([self.user_vectors, self.item_tower.item_vectors], axis=0))

    def propagated(self):
        """(users [U, d], items [I, d]) after propagation, not normalised."""
        return split_user_item(self.propagation(self._initial_embeddings(), self.adjacency), self.num_users)

    def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        users, items = self.propagated()
        positive_ids = features[ITEM_INDEX]
        query, positive = tf.gather(users, features[USER_INDEX]), tf.gather(items, positive_ids)
        if self.num_sampled_negatives:
            negative_ids = self.uniform_items(self.negatives_site, [self.num_sampled_negatives], self.num_items,
                                              per_replica=False)
            return info_nce_loss(query, positive, tf.gather(items, negative_ids), temperature=self.temperature)
        return info_nce_loss(query, positive, temperature=self.temperature, positive_ids=positive_ids)

    def item_embeddings(self) -> np.ndarray:
        return tf.math.l2_normalize(self.propagated()[1], axis=-1).numpy()

    def text_only_item_tower(self) -> TextOnlyItemTower:
        """A new item is a node without edges: LightGCN's layers >= 1 give it nothing, so its
        embedding is its layer 0, the normalised MLP of its vector."""
        return TextOnlyItemTower(self.item_tower.mlp)

    def query_embeddings(self, user_indices: np.ndarray, histories=None) -> np.ndarray:
        """Transductive: the training users' propagated embeddings (histories are not used)."""
        return tf.math.l2_normalize(tf.gather(self.propagated()[0], user_indices), axis=-1).numpy()

    def _item_layers(self):
        """The items' outputs of layers 0..K-1, which fold-in users aggregate."""
        layers = self.propagation.layer_outputs(self._initial_embeddings(), self.adjacency)
        return [split_user_item(layer, self.num_users)[1] for layer in layers[:-1]]

    def fold_in_queries(self, history, intention_vectors=None, alpha=None) -> tf.Tensor:
        """L2-normalised [B, d] queries of users given only by `history` [B, L] (PAD_ITEM-padded),
        with the current weights. `intention_vectors` [B, d_sem] blend in with weight `alpha`
        (scalar or [B]; default config.alpharec.intention_alpha) before the MLP."""
        return _fold_in(self.history_tower, history, intention_vectors, alpha, self._item_layers(),
                        self.item_inverse_sqrt_degree, self.propagation.alphas)

    def serving_query_tower(self) -> AlphaRecFoldInTower:
        """The fold-in tower for export (`save_query_model`, `save_index_model`, intention serving).
        It snapshots the item side of the graph with the current weights: build it after training."""
        return AlphaRecFoldInTower(self.history_tower, self._item_layers(), self.item_inverse_sqrt_degree,
                                   self.propagation.alphas)


def restore_semantic_mlp(model: AlphaRecModel, checkpoint_path: Union[str, Path]) -> None:
    """Loads only the semantic MLP from `tf.train.Checkpoint(model=<AlphaRecModel>)` (a checkpoint
    prefix, or a directory holding one), e.g. trained on another catalogue: AlphaRec's zero-shot
    setting. The MLP's configuration must match (the checkpoint does not record the activation).

    Raises ValueError when the checkpoint holds no such MLP or its shapes differ; the model is
    then left unchanged.
    """
    path = str(checkpoint_path)
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise ValueError(f"{path}: directory holds no checkpoint")
        path = latest
    target = model.item_tower.mlp
    # Restore into a copy first, so a failure cannot leave the model half overwritten.
    staging = MLP.from_config(target.get_config())
    built_with = tf.zeros([1, model.item_tower.semantic_dim])
    staging(built_with)
    target(built_with)
    # Mirror just the path model/item_tower/mlp: the catalogue-sized variables beside it are
    # never read, so their shapes may differ.
    item_tower_view = tf.Module()
    item_tower_view.mlp = staging
    model_view = tf.Module()
    model_view.item_tower = item_tower_view
    try:
        tf.train.Checkpoint(model=model_view).read(path).expect_partial().assert_existing_objects_matched()
    except AssertionError:
        # Its message lists every unmatched variable with its values; the shapes say enough.
        raise ValueError(f"{path}: no AlphaRec semantic MLP (model/item_tower/mlp) with hidden_dims "
                         f"{target.hidden_dims} and output dim {target.output_dim} over "
                         f"{model.item_tower.semantic_dim}-d vectors") from None
    except ValueError as exc:
        raise ValueError(f"{path}: the semantic MLP there does not fit this model's: {exc}") from exc
    target.set_weights(staging.get_weights())
