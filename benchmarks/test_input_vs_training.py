"""tf.data input throughput against ID two-tower training throughput, on MovieLens-100K.

Run with `make bench`. Prints examples/s of the input pipeline alone (parse, shuffle, batch,
prefetch from the prepared TFRecords) and of `model.fit` fed by that same pipeline, and their
ratio. Goal: input >= 5x training, so training is never input-bound.
"""

import time

import tfrs_llmrec  # noqa: F401  (Keras 2 before TensorFlow)

import pytest  # noqa: E402

from beam_jobs.ingest import run_ingestion  # noqa: E402
from tfrs_llmrec.config.schema import DataConfig, ModelConfig, TowerConfig, TrainConfig  # noqa: E402
from tfrs_llmrec.data.dataset import PreparedDataset  # noqa: E402
from tfrs_llmrec.models import TwoTowerModel  # noqa: E402
from tfrs_llmrec.training import make_optimizer, set_global_determinism  # noqa: E402

BATCH_SIZE = 1024
STEPS = 200


def input_examples_per_second(dataset: PreparedDataset) -> float:
    batches = dataset.interactions("train", BATCH_SIZE, shuffle=True, seed=0, repeat=True)
    iterator = iter(batches)
    for _ in range(10):  # warm up: file opening, autotuning
        next(iterator)
    started = time.perf_counter()
    examples = sum(int(next(iterator)["item_index"].shape[0]) for _ in range(STEPS))
    return examples / (time.perf_counter() - started)


def training_examples_per_second(dataset: PreparedDataset) -> float:
    set_global_determinism(0)
    stats = dataset.stats
    model = TwoTowerModel(stats["num_users"], stats["num_items"], stats["item_train_counts"],
                          ModelConfig(tower=TowerConfig(dim=64), num_sampled_negatives=64))
    model.compile(make_optimizer(TrainConfig(), STEPS))
    batches = dataset.interactions("train", BATCH_SIZE, shuffle=True, seed=0, repeat=True)
    model.fit(batches, steps_per_epoch=10, epochs=1, verbose=0)  # trace and warm up
    started = time.perf_counter()
    model.fit(batches, steps_per_epoch=STEPS, epochs=1, verbose=0)
    return STEPS * BATCH_SIZE / (time.perf_counter() - started)


@pytest.mark.slow
def test_input_pipeline_outpaces_training(tmp_path_factory):
    root = run_ingestion(DataConfig(dataset="ml-100k"), tmp_path_factory.mktemp("bench"), seed=0)
    dataset = PreparedDataset.open(root)
    input_rate = input_examples_per_second(dataset)
    training_rate = training_examples_per_second(dataset)
    ratio = input_rate / training_rate
    print(f"\ninput pipeline: {input_rate:,.0f} examples/s; two-tower training (dim 64, batch {BATCH_SIZE}, "
          f"64 sampled negatives): {training_rate:,.0f} examples/s; ratio input/training = {ratio:.1f}x "
          f"(goal >= 5x)")
    assert ratio > 1.0
