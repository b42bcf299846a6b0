"""One process of a 2-replica job. ENGINE: mirrored (2 logical CPUs in this process), horovod (a
rank under horovodrun) or multi_worker (a worker with TF_CONFIG). Prints one `RESULT {json}` line.

1. Gradient semantics: one SGD(lr=1) step on a fixed global batch of 2B examples, replica r
   taking rows [rB, (r+1)B), must move the weights exactly as one process with the whole batch
   does (up to float summation order), for a sampled-softmax model with cross-replica negatives
   and for AlphaRec's InfoNCE over shared sampled negatives (no in-batch negatives). The
   negative control reduces nothing (Horovod: a plain tape; tf.distribute: no 1/N loss scale)
   and must not match.
2. Training: two epochs, in float32 and in mixed precision, through the real trainer (shuffled data, sampled negatives) into the
   shared directory argv[2] end with weights whose checksum every process prints (they must be
   bit-identical).
"""

import hashlib
import json
import sys

import tfrs_llmrec  # noqa: F401  (Keras 2 before TensorFlow)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

ENGINE = sys.argv[1]
if ENGINE == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from tfrs_llmrec.config.schema import ModelConfig, TowerConfig, TrainConfig  # noqa: E402
from tfrs_llmrec.data.epochs import TrainingEpochs  # noqa: E402
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, USER_INDEX  # noqa: E402
from tfrs_llmrec.models import AlphaRecModel, Replicas, TwoTowerModel  # noqa: E402
from tfrs_llmrec.training import (StrategyDistribution, build_variables, model_weights,  # noqa: E402
                                  set_global_determinism, set_precision, train_stage)

NUM_USERS, NUM_ITEMS, PER_REPLICA = 12, 40, 6


def make_distribution():
    if ENGINE == "mirrored":
        return StrategyDistribution(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), "mirrored")
    from tfrs_llmrec.distributed import make_distribution as configured

    return configured(TrainConfig(strategy=ENGINE))


DISTRIBUTION = make_distribution()


def global_batch(rows=2 * PER_REPLICA, seed=3):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, NUM_USERS, rows)
    return {USER_INDEX: users.astype(np.int64), ITEM_INDEX: rng.integers(0, NUM_ITEMS, rows).astype(np.int64),
            HISTORY: rng.integers(-1, NUM_ITEMS, (rows, 4)).astype(np.int64)}


def build(name, seed=0):
    set_global_determinism(seed)
    if name == "two_tower":
        config = ModelConfig(tower=TowerConfig(dim=8), temperature=0.3, num_sampled_negatives=8,
                             cross_replica_negatives=True)
        return TwoTowerModel(NUM_USERS, NUM_ITEMS, np.arange(1, NUM_ITEMS + 1), config, seed=seed)
    pairs = np.random.default_rng(1).integers(0, [NUM_USERS, NUM_ITEMS], (60, 2))
    vectors = np.random.default_rng(2).normal(size=(NUM_ITEMS, 16)).astype(np.float32)
    config = ModelConfig(tower=TowerConfig(dim=8), temperature=0.3, num_sampled_negatives=8, lightgcn_layers=2)
    return AlphaRecModel(vectors, NUM_USERS, pairs[:, 0], pairs[:, 1], config, seed=seed)


def unreduced(replicas: Replicas) -> Replicas:
    """The negative control: Horovod without the DistributedGradientTape (each rank applies its
    own gradient); tf.distribute without the 1/N loss scale (the summed step is N times too big)."""
    class Unreduced(type(replicas)):
        loss_scale = 1.0

        def reduce_gradients(self, tape, target, variables):
            return tape.gradient(target, variables)

    control = Unreduced.__new__(Unreduced)
    control.__dict__.update(replicas.__dict__)
    return control


def one_step(name, distributed, control=False):
    batch = global_batch()
    if not distributed:
        model = build(name)
        build_variables(model, batch, ["train"])
        model.compile(tf.keras.optimizers.SGD(1.0))
        before = [w.copy() for w in model_weights(model)]
        model.train_step({key: tf.constant(value) for key, value in batch.items()})
        return [after - start for after, start in zip(model_weights(model), before)]
    with DISTRIBUTION.scope():
        model = build(name)
        build_variables(model, batch, ["train"])
        model.compile(tf.keras.optimizers.SGD(1.0))
    replicas = DISTRIBUTION.replicas(sparse_as_dense=False)
    model.replicas = unreduced(replicas) if control else replicas
    before = [w.copy() for w in model_weights(model)]
    step = DISTRIBUTION.step_function(model)
    if ENGINE == "horovod":
        rank = DISTRIBUTION.process_index
        local = {key: tf.constant(value[rank * PER_REPLICA:(rank + 1) * PER_REPLICA]) for key, value in batch.items()}
    else:
        strategy = DISTRIBUTION.strategy

        def rows(context):
            replica = context.replica_id_in_sync_group
            return {key: tf.constant(value[replica * PER_REPLICA:(replica + 1) * PER_REPLICA])
                    for key, value in batch.items()}

        local = strategy.experimental_distribute_values_from_function(rows)
    step(local, tf.constant(0.0))
    return [after - start for after, start in zip(model_weights(model), before)]


def matches(first, second):
    return all(np.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(first, second))


def checksum(arrays):
    return hashlib.sha256(b"".join(np.ascontiguousarray(a, np.float32).tobytes() for a in arrays)).hexdigest()[:16]


def trained_checksum(mixed_precision=False):
    rng = np.random.default_rng(5)
    count = 480
    users = rng.integers(0, NUM_USERS, count)
    records = {USER_INDEX: users.astype(np.int64), ITEM_INDEX: ((3 * users + rng.integers(0, 3, count)) % NUM_ITEMS),
               HISTORY: rng.integers(-1, NUM_ITEMS, (count, 4)).astype(np.int64)}
    epochs = TrainingEpochs(tf.data.Dataset.from_tensor_slices(records), count, 48, seed=11, shuffle_buffer=count)
    set_precision(mixed_precision)
    with DISTRIBUTION.scope():
        model = build("two_tower", seed=DISTRIBUTION.process_index)  # per-process init: the broadcast must fix it
        build_variables(model, epochs.sample_batch(), ["train"])
    model.sampling_seed = 0  # the config's seed, the same everywhere
    model.replicas = DISTRIBUTION.replicas(sparse_as_dense=False)
    set_global_determinism(0)
    epoch_ends = []
    config = TrainConfig(epochs=2, learning_rate=0.02, early_stopping_patience=5, mixed_precision=mixed_precision)
    result = train_stage(model, epochs, config, f"{sys.argv[2]}/{'mixed' if mixed_precision else 'float32'}",
                         DISTRIBUTION, lambda m: epoch_ends.append(1) or len(epoch_ends))
    set_precision(False)
    assert np.isfinite(result.history["loss"]).all()
    return checksum(model_weights(model))


result = {"process": DISTRIBUTION.process_index, "replicas": DISTRIBUTION.num_replicas}
for name in ("two_tower", "alpharec"):
    reference = one_step(name, distributed=False)
    result[f"{name}_matches"] = matches(one_step(name, distributed=True), reference)
    result[f"{name}_control_matches"] = matches(one_step(name, distributed=True, control=True), reference)
result["trained_checksum"] = trained_checksum()
# Mixed precision: the loss scale's skip-or-apply decision must agree on every process.
result["mixed_precision_checksum"] = trained_checksum(mixed_precision=True)
print("RESULT " + json.dumps(result), flush=True)
