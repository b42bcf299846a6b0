"""Choosing the strategy: clear errors when the environment cannot provide it."""

import json

import pytest
import tensorflow as tf

import tfrs_llmrec.distributed as distributed
from tfrs_llmrec.config.schema import TrainConfig
from tfrs_llmrec.distributed import StrategyError, make_distribution


def test_single_is_the_default_strategy_with_one_replica():
    distribution = make_distribution(TrainConfig())
    assert distribution.name == "single" and distribution.num_replicas == 1 and distribution.is_chief
    assert distribution.strategy is tf.distribute.get_strategy()


def test_horovod_without_the_build_names_the_make_target(monkeypatch):
    monkeypatch.setattr(distributed, "horovod_installed", lambda: False)
    with pytest.raises(StrategyError, match=r"train.strategy: 'horovod' .*make setup-horovod"):
        make_distribution(TrainConfig(strategy="horovod"))


def test_multi_worker_needs_a_valid_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(StrategyError, match="needs TF_CONFIG"):
        make_distribution(TrainConfig(strategy="multi_worker"))
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(StrategyError, match="TF_CONFIG: not a valid cluster spec"):
        make_distribution(TrainConfig(strategy="multi_worker"))
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]},
                                                "task": {"type": "worker", "index": 3}}))
    with pytest.raises(StrategyError, match="task worker:3 is not in the cluster"):
        make_distribution(TrainConfig(strategy="multi_worker"))
