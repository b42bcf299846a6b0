"""A small in-memory dataset and models for the trainer tests."""

import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.config.schema import ModelConfig, TowerConfig
from tfrs_llmrec.data.epochs import TrainingEpochs
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, USER_INDEX
from tfrs_llmrec.models import TwoTowerModel
from tfrs_llmrec.training import StrategyDistribution, set_global_determinism

NUM_USERS, NUM_ITEMS = 8, 16


def examples(count=256, seed=0):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, NUM_USERS, size=count)
    items = 2 * users + rng.integers(0, 2, size=count)
    history = np.where(rng.random((count, 3)) < 0.5, (items[:, None] + 1) % NUM_ITEMS, -1)
    return {USER_INDEX: users.astype(np.int64), ITEM_INDEX: items.astype(np.int64), HISTORY: history.astype(np.int64)}


def epochs(global_batch=32, count=256, seed=7):
    return TrainingEpochs(tf.data.Dataset.from_tensor_slices(examples(count)), count, global_batch, seed,
                          shuffle_buffer=count)


def two_tower(seed=0, negatives=4):
    set_global_determinism(seed)
    return TwoTowerModel(NUM_USERS, NUM_ITEMS, np.full(NUM_ITEMS, 4), ModelConfig(
        tower=TowerConfig(dim=8), temperature=0.2, num_sampled_negatives=negatives), seed=seed)


class Scripted:
    """A monitor returning preset values, recording the item table it saw each epoch."""

    def __init__(self, values):
        self.values = list(values)
        self.seen = []

    def __call__(self, model):
        self.seen.append(model.item_embeddings().copy())
        return self.values[len(self.seen) - 1]


@pytest.fixture
def single():
    return StrategyDistribution(tf.distribute.get_strategy(), "single")
