"""Training epochs whose order is a function of (seed, epoch): the input side of exact resume and of
equal step counts on every replica.

Epoch e shuffles the records with a seed derived from (seed, e) (the same on every replica), so
the global order never depends on how many replicas read it. Replica r of N takes every N-th
record (`shard` after the shuffle), which puts into global step g exactly the N*b records that a
single process with batch N*b would see at step g. Every replica runs `steps_per_epoch` =
records // global batch steps (the remainder, different each epoch, is dropped), so synchronous
replicas never wait for one that ran out. Resuming at step s skips s batches' worth of
serialized records before parsing, so the iterator position is just (epoch, step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

import tensorflow as tf

Parse = Callable[[tf.Tensor], Dict[str, tf.Tensor]]


def epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch)) % (2 ** 63 - 1)


@dataclass
class TrainingEpochs:
    """`source` yields one record per example (serialized, then `parse` maps a batch of them, or
    already a dict of tensors with `parse` None) in a fixed order."""

    source: tf.data.Dataset
    num_records: int
    global_batch_size: int
    seed: int
    shuffle_buffer: int
    parse: Optional[Parse] = None

    @property
    def steps_per_epoch(self) -> int:
        return self.num_records // self.global_batch_size

    def dataset(self, epoch: int, start_step: int, num_shards: int = 1, shard_index: int = 0,
                batches_per_step: int = 1) -> tf.data.Dataset:
        """The batches of `epoch` from `start_step` on for input pipeline `shard_index` of
        `num_shards`, which feeds `batches_per_step` replicas per step."""
        if self.global_batch_size % (num_shards * batches_per_step):
            raise ValueError(f"global batch {self.global_batch_size} does not split evenly over "
                             f"{num_shards * batches_per_step} replicas")
        batch_size = self.global_batch_size // (num_shards * batches_per_step)
        remaining = self.steps_per_epoch - start_step
        order_seed = epoch_seed(self.seed, epoch)
        dataset = self.source.shuffle(self.shuffle_buffer, seed=order_seed, reshuffle_each_iteration=False)
        dataset = dataset.shard(num_shards, shard_index).skip(start_step * batches_per_step * batch_size)
        dataset = dataset.batch(batch_size, drop_remainder=True).take(max(remaining, 0) * batches_per_step)
        if self.parse is not None:
            dataset = dataset.map(self.parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return dataset.prefetch(tf.data.AUTOTUNE)

    def sample_batch(self, size: int = 8) -> Dict[str, tf.Tensor]:
        """A few examples, for building the model's variables before training."""
        batch = next(iter(self.source.take(size).batch(size)))
        return self.parse(batch) if self.parse is not None else batch
