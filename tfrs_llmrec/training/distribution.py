"""How a training job is spread over replicas: the interface the trainer uses, and its
tf.distribute implementation (the default one-replica strategy, MirroredStrategy and
MultiWorkerMirroredStrategy). Horovod's lives in `tfrs_llmrec.distributed.horovod`.
"""

from __future__ import annotations

import abc
import contextlib
from typing import Callable, Iterable, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tfrs_llmrec.data.epochs import TrainingEpochs
from tfrs_llmrec.models.base import Replicas, TrainableModel

StepFunction = Callable[[object, tf.Tensor], Tuple[tf.Tensor, tf.Tensor]]


class Distribution(abc.ABC):
    """One process's view of a training job. The defaults describe one process with one replica.

    `is_chief` is the one process that writes checkpoints, metrics, reports and exports; the
    others train and wait. `agree` gives every process the chief's values (e.g. its
    early-stopping decision), so every replica stops at the same epoch.
    """

    name = "single"
    num_replicas = 1
    process_index = 0
    num_processes = 1

    @property
    def is_chief(self) -> bool:
        return self.process_index == 0

    def scope(self):
        """Where models and optimizers are built."""
        return contextlib.nullcontext()

    def replicas(self, sparse_as_dense: bool) -> Replicas:
        replicas = Replicas()
        replicas.sparse_as_dense = sparse_as_dense
        return replicas

    @abc.abstractmethod
    def epoch_batches(self, epochs: TrainingEpochs, epoch: int, start_step: int) -> Iterable:
        """This process's batches of `epoch` from `start_step` on, as its step function takes them."""

    @abc.abstractmethod
    def step_function(self, model: TrainableModel) -> StepFunction:
        """(batch, local stop request 0/1) -> (mean loss over replicas, stop requests summed over them)."""

    def broadcast_variables(self, variables: Sequence[tf.Variable]) -> None:
        """Makes every process hold the chief's values."""

    def agree(self, values: Sequence[float]) -> np.ndarray:
        """The chief's `values` on every process (the other processes' arguments are ignored)."""
        return np.asarray(values, np.float64)

    def barrier(self) -> None:
        self.agree([0.0])


class StrategyDistribution(Distribution):
    """A tf.distribute strategy: the default (one replica), mirrored or multi-worker mirrored."""

    def __init__(self, strategy: tf.distribute.Strategy, name: str, process_index: int = 0, num_processes: int = 1):
        self.strategy = strategy
        self.name = name
        self.num_replicas = strategy.num_replicas_in_sync
        self.process_index = process_index
        self.num_processes = num_processes
        self._agree = None

    def scope(self):
        return self.strategy.scope()

    def epoch_batches(self, epochs: TrainingEpochs, epoch: int, start_step: int) -> Iterable:
        def per_pipeline(context: tf.distribute.InputContext) -> tf.data.Dataset:
            batches_per_step = self.num_replicas // context.num_input_pipelines
            return epochs.dataset(epoch, start_step, context.num_input_pipelines, context.input_pipeline_id,
                                  batches_per_step)

        return self.strategy.distribute_datasets_from_function(per_pipeline)

    def step_function(self, model: TrainableModel) -> StepFunction:
        strategy = self.strategy

        def replica_step(batch, stop):
            loss = model.train_step(batch)["loss"]
            # identity: an op placed on this replica's device (the captured input has none).
            return loss, tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(stop))

        @tf.function
        def step(batch, stop):
            losses, stops = strategy.run(replica_step, args=(batch, stop))
            return (strategy.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None),
                    strategy.experimental_local_results(stops)[0])

        return step

    def agree(self, values: Sequence[float]) -> np.ndarray:
        if self.num_replicas == 1:
            return np.asarray(values, np.float64)
        if self._agree is None:
            def replica_fn(local):
                context = tf.distribute.get_replica_context()
                # Global replica 0 lives on the chief: only its copy counts.
                mine = tf.where(tf.equal(context.replica_id_in_sync_group, 0), local, tf.zeros_like(local))
                return context.all_reduce(tf.distribute.ReduceOp.SUM, mine)

            # In a tf.function: run eagerly, a strategy starts threads for every call.
            self._agree = tf.function(lambda local: self.strategy.run(replica_fn, args=(local,)))
        agreed = self._agree(tf.constant(np.asarray(values, np.float64)))
        return self.strategy.experimental_local_results(agreed)[0].numpy()
