"""Horovod: one process per rank under `horovodrun`, gradients averaged by DistributedGradientTape.

Imported only when `train.strategy: horovod` is asked for (Horovod is built by `make setup`, but
nothing else may need it to import).
"""

from __future__ import annotations

from typing import Iterable, List, Sequence

import numpy as np
import tensorflow as tf

import horovod.tensorflow as hvd
from tfrs_llmrec.data.epochs import TrainingEpochs
from tfrs_llmrec.models.base import RecommenderModel, Replicas
from tfrs_llmrec.training.distribution import Distribution, StepFunction


class HorovodReplicas(Replicas):
    """Ranks are replicas; DistributedGradientTape averages the gradients, so losses are not scaled."""

    def __init__(self, sparse_as_dense: bool):
        self.sparse_as_dense = sparse_as_dense

    @property
    def num_replicas(self) -> int:
        return hvd.size()

    @property
    def loss_scale(self) -> float:
        return 1.0

    def replica_index(self) -> tf.Tensor:
        return tf.constant(hvd.rank(), tf.int32)

    def all_gather(self, tensor: tf.Tensor) -> tf.Tensor:
        return hvd.allgather(tensor) if hvd.size() > 1 else tensor

    def reduce_gradients(self, tape: tf.GradientTape, target, variables) -> List:
        # Embedding gradients are IndexedSlices: all-gathered unless sparse_as_dense makes them
        # dense tensors that one allreduce sums (cheaper for small tables, see docs/scaling.md).
        tape = hvd.DistributedGradientTape(tape, sparse_as_dense=self.sparse_as_dense, op=hvd.Average)
        return tape.gradient(target, variables)


class HorovodDistribution(Distribution):
    name = "horovod"

    def __init__(self):
        hvd.init()
        self.num_replicas = hvd.size()
        self.process_index = hvd.rank()
        self.num_processes = hvd.size()

    def replicas(self, sparse_as_dense: bool) -> Replicas:
        return HorovodReplicas(sparse_as_dense)

    def epoch_batches(self, epochs: TrainingEpochs, epoch: int, start_step: int) -> Iterable:
        return epochs.dataset(epoch, start_step, hvd.size(), hvd.rank())

    def step_function(self, model: RecommenderModel) -> StepFunction:
        size = float(hvd.size())

        @tf.function
        def step(batch, stop):
            loss = model.train_step(batch)["loss"]
            # One allreduce for the logged loss and the ranks' stop requests (e.g. a SIGTERM).
            summed = hvd.allreduce(tf.stack([tf.cast(loss, tf.float32), tf.cast(stop, tf.float32)]), op=hvd.Sum,
                                   name="loss_and_stop")
            return summed[0] / size, summed[1]

        return step

    def broadcast_variables(self, variables: Sequence[tf.Variable]) -> None:
        if variables:
            hvd.broadcast_variables(list(variables), root_rank=0)

    def agree(self, values: Sequence[float]) -> np.ndarray:
        return hvd.broadcast(tf.constant(np.asarray(values, np.float64)), root_rank=0, name="agree").numpy()
