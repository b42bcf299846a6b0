"""The base every trainable model derives from: one `train_step` for every strategy, seeded
sampling that a checkpoint can replay, and the interface the trainer, evaluator and exporter use.

`train_step` computes the loss under a tape, lets the active `Replicas` reduce the gradients and
applies them. Two conventions make N replicas with global batch N*B train like one process with
batch N*B:
- tf.distribute sums the replicas' gradients when the optimizer applies them, so each replica's
  loss (a mean over its own B examples) is scaled by 1 / num_replicas;
- Horovod's DistributedGradientTape averages them, so its `Replicas` does not scale.

Sampled negatives come from stateless random ops seeded by (model seed, call site, optimizer
step, replica): no hidden RNG state, so a run resumed from a checkpoint (which holds the
optimizer step) draws exactly the negatives the uninterrupted run drew.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_llmrec.config.schema import TrainConfig
from tfrs_llmrec.data.spec import HISTORY, USER_INDEX

# Redraws of a BPR negative that hit a training item: with a user who holds a share p of the
# catalogue, p ** (1 + NEGATIVE_REDRAWS) of its negatives remain positives (0.4 ** 9 < 0.03%).
NEGATIVE_REDRAWS = 8


class Replicas:
    """How the replicas of one training step cooperate. This default follows tf.distribute: it
    reads the current strategy (the default strategy is one replica) and sums gradients."""

    sparse_as_dense: bool = False

    @property
    def num_replicas(self) -> int:
        return tf.distribute.get_strategy().num_replicas_in_sync

    @property
    def loss_scale(self) -> float:
        return 1.0 / self.num_replicas

    def replica_index(self) -> tf.Tensor:
        context = tf.distribute.get_replica_context()
        if context is None:
            return tf.constant(0, tf.int32)
        return tf.cast(context.replica_id_in_sync_group, tf.int32)

    def all_gather(self, tensor: tf.Tensor) -> tf.Tensor:
        """Every replica's `tensor` concatenated along axis 0, in replica order (differentiable)."""
        context = tf.distribute.get_replica_context()
        if context is None or self.num_replicas == 1:
            return tensor
        # identity: an op on this replica's device (an input fed from outside may carry none).
        return context.all_gather(tf.identity(tensor), axis=0)

    def reduce_gradients(self, tape: tf.GradientTape, target, variables) -> List:
        gradients = tape.gradient(target, variables)
        if self.sparse_as_dense:
            gradients = [None if g is None else tf.convert_to_tensor(g) for g in gradients]
        # The optimizer's apply_gradients all-reduces (sums) them across tf.distribute replicas.
        return gradients


@dataclass
class StagePlan:
    """One training stage: which parts train (`RecommenderModel.set_stage(name)`), with which
    schedule, and what the trainer monitors for checkpoints and early stopping."""

    name: str
    train: TrainConfig
    # None: the configured ranking metric (train.monitor) on validation users.
    monitor: Optional[Callable[["RecommenderModel"], float]] = None
    monitor_name: Optional[str] = None
    stop_at: Optional[float] = None
    # Also record the ranking hit rates each epoch under this prefix (e.g. MotiR's semantic-only HR).
    ranking_extras: Optional[str] = None


class TrainableModel(tfrs.Model):
    """What the training core needs of any model, retriever or ranker: `compute_loss`, one
    `train_step` for every strategy, seeded sampling, and the stages to train."""

    def __init__(self, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.replicas: Replicas = Replicas()
        self.sampling_seed = 0 if seed is None else int(seed)
        self._sampling_sites = 0
        self.jit_compile = False
        self._loss_function = None

    # ------------------------------------------------------------------ training

    def sampling_seed_for(self, site: int, per_replica: bool = True) -> tf.Tensor:
        """A stateless-RNG seed for (model seed, call site, optimizer step[, replica]).

        Negatives shared by a whole batch use `per_replica=False`: every replica then draws the
        same ones, which is what one process with the global batch draws. Per-row negatives use
        a per-replica seed, so replicas do not repeat each other's draws.
        """
        step = self.optimizer.iterations if self.optimizer is not None else tf.constant(0, tf.int64)
        seed = tf.constant([self.sampling_seed, site], tf.int64)
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(step, tf.int64))
        if not per_replica:
            return seed
        return tf.random.experimental.stateless_fold_in(seed, tf.cast(self.replicas.replica_index(), tf.int64))

    def new_sampling_site(self) -> int:
        """A call-site number for `sampling_seed_for`; call once per sampling op, at build time."""
        self._sampling_sites += 1
        return self._sampling_sites

    def uniform_items(self, site: int, shape, num_items: int, per_replica: bool = True) -> tf.Tensor:
        return tf.random.stateless_uniform(shape, self.sampling_seed_for(site, per_replica), 0, num_items,
                                           dtype=tf.int64)

    def uniform_negatives(self, site: int, users: tf.Tensor, num_items: int, positives=None,
                          redraws: int = NEGATIVE_REDRAWS) -> tf.Tensor:
        """One uniform item per user; with `positives` (`TrainingPositives`), a draw that is one of
        the user's training items is redrawn up to `redraws` times (each redraw from its own
        stateless seed, so a resumed run draws the same items)."""
        seed = self.sampling_seed_for(site)

        def draw(draw_seed: tf.Tensor) -> tf.Tensor:
            return tf.random.stateless_uniform(tf.shape(users), draw_seed, 0, num_items, dtype=tf.int64)

        negatives = draw(seed)  # what uniform_items(site, ...) draws
        if positives is None:
            return negatives
        for redraw in range(1, redraws + 1):
            fresh = draw(tf.random.experimental.stateless_fold_in(seed, redraw))
            negatives = tf.where(positives.contains(users, negatives), fresh, negatives)
        return negatives

    def _training_loss(self, features) -> tf.Tensor:
        loss = tf.cast(self.compute_loss(features, training=True), tf.float32)
        if self.losses:
            loss += tf.cast(tf.add_n(self.losses), tf.float32)
        return loss

    def train_step(self, features) -> Dict[str, tf.Tensor]:
        if self._loss_function is None:
            self._loss_function = (tf.function(self._training_loss, jit_compile=True) if self.jit_compile
                                   else self._training_loss)
        mixed = isinstance(self.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
        with tf.GradientTape() as tape:
            loss = self._loss_function(features)
            target = loss * self.replicas.loss_scale
            if mixed:
                target = self.optimizer.get_scaled_loss(target)
        # Read after the forward pass: lazily built layers create their variables there.
        variables = self.trainable_variables
        gradients = self.replicas.reduce_gradients(tape, target, variables)
        if mixed:
            gradients = self.optimizer.get_unscaled_gradients(gradients)
        self.optimizer.apply_gradients((g, v) for g, v in zip(gradients, variables) if g is not None)
        return {"loss": loss}

    def compile(self, optimizer=None, **kwargs):
        self._loss_function = None  # trainable variables may differ from the last compile
        super().compile(optimizer=optimizer, **kwargs)

    # ------------------------------------------------------------------ stages

    def stage_plans(self, train: TrainConfig) -> List[StagePlan]:
        """The stages to train in order; the last one's weights are the model's."""
        return [StagePlan("train", train)]

    def set_stage(self, stage: str) -> None:
        """Sets which variables train in `stage`."""


class RecommenderModel(TrainableModel, metaclass=abc.ABCMeta):
    """A trainable retrieval model. Subclasses implement `compute_loss` and `item_embeddings`; the
    defaults below describe a one-stage model with a `query_tower` (models without one override
    `query_embeddings` and `serving_query_tower`)."""

    @abc.abstractmethod
    def item_embeddings(self) -> np.ndarray:
        """[I, d] every item's embedding, as retrieval scores them."""

    def query_embeddings(self, user_indices: np.ndarray, histories: np.ndarray) -> np.ndarray:
        """[B, d] (or [B, K, d] for K interests) the queries of `user_indices` with their `histories`
        ([B, L], PAD_ITEM-padded): the query tower's output."""
        return self.query_tower({USER_INDEX: tf.constant(user_indices, tf.int64),
                                 HISTORY: tf.constant(histories, tf.int64)}).numpy()

    def serving_query_tower(self):
        """The (features) -> query embedding callable to export, or None when not exportable."""
        return getattr(self, "query_tower", None)

    # The serving tower also takes a query-text vector (intention-aware retrieval).
    serves_text_intentions = False

    def text_only_item_tower(self):
        """For semantic models, a callable (a tf.Module) from [B, d_sem] language-model vectors to the
        embeddings of items known by nothing else (new items); None for models of IDs alone."""
        return None

    def item_diagnostics(self) -> Dict[str, np.ndarray]:
        """Per-item values worth reporting by popularity bucket (e.g. a gate's weight)."""
        return {}


def all_items(function: Callable[[tf.Tensor], tf.Tensor], num_items: int, batch_size: int = 65536) -> np.ndarray:
    """`function` over every item index, in batches, as one array."""
    parts = [function(tf.range(start, min(start + batch_size, num_items), dtype=tf.int64)).numpy()
             for start in range(0, num_items, batch_size)]
    return np.concatenate(parts, axis=0)
