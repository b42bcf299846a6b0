"""Distributed training: picks the configured strategy. The only package that imports horovod."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from tfrs_llmrec.config.schema import TrainConfig
from tfrs_llmrec.distributed.horovod_build import horovod_installed
from tfrs_llmrec.training.distribution import Distribution, StrategyDistribution


class StrategyError(RuntimeError):
    """The configured strategy cannot run in this environment; the message says how to fix it."""


def make_distribution(config: TrainConfig) -> Distribution:
    """The `train.strategy` of `config`, set up for this process."""
    if config.strategy == "single":
        return StrategyDistribution(tf.distribute.get_strategy(), "single")
    if config.strategy == "mirrored":
        return StrategyDistribution(tf.distribute.MirroredStrategy(), "mirrored")
    if config.strategy == "multi_worker":
        return _multi_worker()
    if not horovod_installed():
        raise StrategyError("train.strategy: 'horovod' needs the Horovod build, which is missing from this "
                            "environment; run `make setup-horovod` (part of `make setup`), which builds it with "
                            "our TF 2.20 patch")
    from tfrs_llmrec.distributed.horovod import HorovodDistribution

    return HorovodDistribution()


def _multi_worker() -> Distribution:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise StrategyError("train.strategy: 'multi_worker' needs TF_CONFIG (a cluster spec and this task); "
                            "start the workers with `llmrec launch --workers N CONFIG` or a TFJob")
    try:
        tf_config = json.loads(raw)
        cluster, task = tf_config["cluster"], tf_config["task"]
        task_type, task_index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise StrategyError(f"TF_CONFIG: not a valid cluster spec ({error!r})") from None
    # The chief is the "chief" task when there is one, else worker 0; it holds global replica 0.
    order = [("chief", index) for index in range(len(cluster.get("chief", [])))] + [
        ("worker", index) for index in range(len(cluster.get("worker", [])))]
    if (task_type, task_index) not in order:
        raise StrategyError(f"TF_CONFIG: task {task_type}:{task_index} is not in the cluster {cluster}")
    # No CommunicationOptions(timeout_seconds=...): in TF 2.20 it leaks a thread per collective
    # (thousands per epoch, until thread creation fails). A dead peer is caught by the
    # coordination service's heartbeats instead, and `llmrec launch` stops the others.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    return StrategyDistribution(strategy, "multi_worker", process_index=order.index((task_type, task_index)),
                                num_processes=len(order))


__all__ = ["Distribution", "StrategyError", "make_distribution"]
