"""One process of the distributed step-time benchmark (see test_distributed_throughput.py).

argv: ENGINE (single | horovod | multi_worker) SPARSE_AS_DENSE (0/1) MODEL (two_tower | lightgcn).
Trains at Amazon Games sizes on synthetic batches of global size 1,024: the ID two-tower (16,856
items, d = 64, history pooling, 64 sampled negatives) or LightGCN (50,546 users + 16,856 items,
288,626 random training edges, 3 layers: every replica propagates the whole graph every step), and
prints `RESULT {json}` from the chief: ms per step with the
gradients reduced across processes, and ms per step of the same step without the reduction
(each process applies its own gradient), whose difference is the time spent reducing.
"""

import json
import sys
import time

import tfrs_llmrec  # noqa: F401  (Keras 2 before TensorFlow)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfrs_llmrec.config.schema import ModelConfig, TowerConfig, TrainConfig  # noqa: E402
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, PAD_ITEM, USER_INDEX  # noqa: E402
from tfrs_llmrec.distributed import make_distribution  # noqa: E402
from tfrs_llmrec.models import LightGCNModel, TwoTowerModel  # noqa: E402
from tfrs_llmrec.training import build_variables, set_global_determinism  # noqa: E402

NUM_USERS, NUM_ITEMS, DIM, GLOBAL_BATCH, MAX_HISTORY = 50_546, 16_856, 64, 1_024, 50
WARMUP, STEPS = 10, 60

ENGINE, SPARSE_AS_DENSE, MODEL = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
distribution = make_distribution(TrainConfig(strategy=ENGINE))
processes, index = distribution.num_processes, distribution.process_index
local_batch = GLOBAL_BATCH // distribution.num_replicas


def batches(count):
    rng = np.random.default_rng(100 + index)
    popularity = 1.0 / np.arange(1, NUM_ITEMS + 1) ** 0.8
    popularity /= popularity.sum()
    out = []
    for _ in range(count):
        items = rng.choice(NUM_ITEMS, local_batch, p=popularity)
        lengths = rng.poisson(6.0, local_batch).clip(1, MAX_HISTORY)
        history = np.full((local_batch, MAX_HISTORY), PAD_ITEM, np.int64)
        for row, length in enumerate(lengths):
            history[row, :length] = rng.choice(NUM_ITEMS, length, p=popularity)
        out.append({USER_INDEX: tf.constant(rng.integers(0, NUM_USERS, local_batch)),
                    ITEM_INDEX: tf.constant(items.astype(np.int64)), HISTORY: tf.constant(history)})
    return out


def feed(batch):
    if ENGINE != "multi_worker":
        return batch
    return distribution.strategy.experimental_distribute_values_from_function(lambda context: batch)


def unreduced(replicas):
    class Unreduced(type(replicas)):
        def reduce_gradients(self, tape, target, variables):
            return tape.gradient(target, variables)

    control = Unreduced.__new__(Unreduced)
    control.__dict__.update(replicas.__dict__)
    return control


def ms_per_step(reduce: bool, data) -> float:
    set_global_determinism(0)
    config = ModelConfig(tower=TowerConfig(dim=DIM, use_user_id=False), num_sampled_negatives=64, lightgcn_layers=3)
    with distribution.scope():
        if MODEL == "lightgcn":
            edges = np.random.default_rng(7).integers(0, [NUM_USERS, NUM_ITEMS], (288_626, 2))
            model = LightGCNModel(NUM_USERS, NUM_ITEMS, edges[:, 0], edges[:, 1], config, seed=0)
        else:
            model = TwoTowerModel(NUM_USERS, NUM_ITEMS, np.ones(NUM_ITEMS), config, seed=0)
        build_variables(model, data[0], ["train"])
        model.compile(tf.keras.optimizers.Adam(1e-3))
    replicas = distribution.replicas(SPARSE_AS_DENSE)
    model.replicas = replicas if reduce else unreduced(replicas)
    step = distribution.step_function(model)
    for batch in data[:WARMUP]:
        step(feed(batch), tf.constant(0.0))
    distribution.barrier()
    started = time.perf_counter()
    for batch in data[WARMUP:WARMUP + STEPS]:
        loss, _ = step(feed(batch), tf.constant(0.0))
    float(loss)
    elapsed = time.perf_counter() - started
    # The slowest process sets the pace: agree on the chief's view after a barrier.
    distribution.barrier()
    return 1000.0 * elapsed / STEPS


data = batches(WARMUP + STEPS)
reduced = ms_per_step(True, data)
alone = ms_per_step(False, data)
if distribution.is_chief:
    print("RESULT " + json.dumps({"model": MODEL, "engine": ENGINE, "processes": processes, "sparse_as_dense": SPARSE_AS_DENSE,
                                  "ms_per_step": reduced, "ms_per_step_unreduced": alone,
                                  "examples_per_second": GLOBAL_BATCH / (reduced / 1000.0)}), flush=True)
