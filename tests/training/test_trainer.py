import json
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.training.conftest import Scripted, epochs, two_tower
from tfrs_llmrec.config.schema import TrainConfig
from tfrs_llmrec.training import CheckpointError, TerminationRequest, Preempted, build_variables, model_weights, train_stage


def train(model, directory, config, monitor, distribution, data=None, **kwargs):
    data = data or epochs()
    build_variables(model, data.sample_batch(), ["train"])
    return train_stage(model, data, config, directory, distribution, monitor, **kwargs)


def test_early_stopping_and_best_weights_restored(tmp_path, single):
    model = two_tower()
    monitor = Scripted([0.1, 0.5, 0.4, 0.3, 0.2, 0.1])
    result = train(model, tmp_path, TrainConfig(epochs=6, early_stopping_patience=2, learning_rate=0.01), monitor,
                   single)
    assert result.epochs_completed == 4  # epochs 3 and 4 did not improve on epoch 2
    assert result.stopped_early and result.best_epoch == 2 and result.best_value == 0.5
    assert result.history["val_recall@20"] == [0.1, 0.5, 0.4, 0.3]
    np.testing.assert_array_equal(model.item_embeddings(), monitor.seen[1])


def test_every_epoch_runs_the_same_number_of_full_batches(tmp_path, single):
    data = epochs(global_batch=48, count=256)  # 256 // 48 = 5 steps, the last 16 examples dropped
    batches = list(data.dataset(epoch=0, start_step=0))
    assert [len(batch["user_index"]) for batch in batches] == [48] * 5
    result = train(two_tower(), tmp_path, TrainConfig(epochs=2, early_stopping_patience=5), Scripted([1, 2]), single,
                   data=data)
    assert result.global_steps == 10


def test_epoch_order_depends_on_seed_and_epoch_and_sharding_splits_global_batches():
    data = epochs(global_batch=32)
    first = np.concatenate([b["item_index"] for b in data.dataset(0, 0)])
    again = np.concatenate([b["item_index"] for b in data.dataset(0, 0)])
    other_epoch = np.concatenate([b["item_index"] for b in data.dataset(1, 0)])
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other_epoch)
    # Step g of 2 shards of batch 16 holds exactly the records of step g of one pipeline of batch 32.
    whole = [np.sort(b["user_index"] * 100 + b["item_index"]) for b in data.dataset(0, 0)]
    shards = [list(data.dataset(0, 0, num_shards=2, shard_index=index)) for index in (0, 1)]
    for step, batch in enumerate(whole):
        halves = np.concatenate([shards[i][step]["user_index"] * 100 + shards[i][step]["item_index"] for i in (0, 1)])
        np.testing.assert_array_equal(np.sort(halves), batch)
    # Resuming at step 3 yields the same batches as steps 3.. of the whole epoch.
    resumed = [b["item_index"] for b in data.dataset(0, 3)]
    np.testing.assert_array_equal(np.concatenate(resumed), first[3 * 32:])


def test_resume_mid_epoch_is_bit_identical(tmp_path, single):
    """Stops after 12 of 16 steps (SIGTERM path: the flag rides along with step 12), resumes in a fresh model, and ends where an
    uninterrupted run ends: same data order, same sampled negatives, same optimizer state."""
    config = TrainConfig(epochs=2, learning_rate=0.01, early_stopping_patience=5, checkpoint_every_steps=3)
    straight = two_tower()
    train(straight, tmp_path / "straight", config, Scripted([1, 2]), single)

    class StopAfter(TerminationRequest):
        def __init__(self, steps):
            super().__init__()
            self.steps = steps
            self.polls = 0

        @property
        def requested(self):
            self.polls += 1
            return self.polls > self.steps

        @requested.setter
        def requested(self, value):
            pass

    with pytest.raises(Preempted):
        train(two_tower(), tmp_path / "resumed", config, Scripted([1]), single, termination=StopAfter(11))
    state = json.loads(sorted((tmp_path / "resumed" / "latest").glob("step-*"))[-1].joinpath("state.json").read_text())
    assert state["loop"] == {**state["loop"], "epoch": 1, "step_in_epoch": 4}  # 8 steps per epoch, then 4
    resumed = two_tower()
    tf.keras.utils.set_random_seed(99)  # other initial weights: they must come from the checkpoint
    build_variables(resumed, epochs().sample_batch(), ["train"])
    tf.keras.utils.set_random_seed(0)  # the config's seed again (tf.data's shuffle reads it)
    result = train(resumed, tmp_path / "resumed", config, Scripted([2]), single)
    assert result.resumed_from_step == 12 and result.epochs_completed == 2
    assert result.history["val_recall@20"] == [1, 2]
    for expected, actual in zip(model_weights(straight), model_weights(resumed)):
        np.testing.assert_array_equal(actual, expected)


def test_finished_run_is_not_retrained(tmp_path, single):
    train(two_tower(), tmp_path, TrainConfig(epochs=1), Scripted([0.3]), single)
    again = Scripted([])
    result = train(two_tower(), tmp_path, TrainConfig(epochs=1), again, single)
    assert again.seen == [] and result.epochs_completed == 1


class SlowMonitor(Scripted):
    """Each validation takes at least SECONDS, so the training time has a known lower bound."""

    SECONDS = 1.0

    def __call__(self, model):
        time.sleep(self.SECONDS)
        return super().__call__(model)


def test_training_seconds_add_up_over_a_resume_and_survive_reopening_a_finished_run(tmp_path, single):
    first = train(two_tower(), tmp_path, TrainConfig(epochs=1), SlowMonitor([0.3]), single)
    resumed = train(two_tower(), tmp_path, TrainConfig(epochs=2), Scripted([0.4]), single)
    reopened = train(two_tower(), tmp_path, TrainConfig(epochs=2), Scripted([]), single)
    assert first.seconds >= SlowMonitor.SECONDS
    # The resumed invocation ran 8 steps at examples_per_second (its own rate); its total adds the
    # first invocation's slow epoch on top of its own time.
    own_seconds = 8 * epochs().global_batch_size / resumed.examples_per_second
    assert resumed.resumed_from_step == 8 and resumed.seconds - own_seconds >= SlowMonitor.SECONDS
    # Reopened (to evaluate again, say): no epoch runs, and the cost recorded at the last checkpoint stays.
    assert reopened.epochs_completed == 2 and SlowMonitor.SECONDS <= reopened.seconds <= resumed.seconds + 1.0


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path, single):
    runs = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        model = two_tower(seed=seed)
        train(model, tmp_path / name, TrainConfig(epochs=2), Scripted([1, 2]), single)
        runs.append(model.item_embeddings())
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_corrupted_checkpoint_is_one_error_naming_the_file(tmp_path, single):
    train(two_tower(), tmp_path, TrainConfig(epochs=1), Scripted([0.3]), single)
    data_file = next((tmp_path / "latest").glob("step-*/ckpt.data-*"))
    payload = bytearray(data_file.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    data_file.write_bytes(bytes(payload))
    with pytest.raises(CheckpointError, match=str(data_file.parent)):
        train(two_tower(), tmp_path, TrainConfig(epochs=2), Scripted([0.4]), single)


def test_an_interrupted_publish_leaves_no_checkpoint_behind(tmp_path, single):
    train(two_tower(), tmp_path, TrainConfig(epochs=1), Scripted([0.3]), single)
    partial = tmp_path / "latest" / ".partial-step-000000099-1"
    partial.mkdir()
    (partial / "ckpt.index").write_bytes(b"half")
    result = train(two_tower(), tmp_path, TrainConfig(epochs=2), Scripted([0.4]), single)
    assert result.resumed_from_step == 8 and not partial.exists()


def test_learning_rate_warms_up_scales_and_decays():
    from tfrs_llmrec.training import make_optimizer

    config = TrainConfig(learning_rate=1e-3, final_learning_rate=1e-4, batch_size=64, batch_scaling="per_replica",
                         lr_scaling="linear", warmup_steps=10)
    schedule = make_optimizer(config, total_steps=100, num_replicas=4)._learning_rate
    assert float(schedule(0)) == pytest.approx(4e-3 * 0.1 * (0.1 ** (0 / 100)), rel=1e-5)
    assert float(schedule(9)) == pytest.approx(4e-3 * 0.1 ** (9 / 100), rel=1e-5)
    assert float(schedule(100)) == pytest.approx(4e-4, rel=1e-5)
    sqrt = make_optimizer(TrainConfig(learning_rate=1e-3, batch_scaling="per_replica", lr_scaling="sqrt"), 10, 4)
    assert float(sqrt._learning_rate(5)) == pytest.approx(2e-3, rel=1e-6)
    fixed_global = make_optimizer(TrainConfig(learning_rate=1e-3, lr_scaling="linear"), 10, 4)
    assert float(fixed_global._learning_rate(5)) == pytest.approx(1e-3, rel=1e-6)


@pytest.mark.parametrize("optimizer", ["adam", "adagrad"])
def test_optimizer_epsilon_is_the_configured_one(optimizer):
    """One step on a gradient of 1e-6 at learning rate 1, by hand. Keras adds epsilon to the root of
    the uncorrected second moment: Adam moves by sqrt(1 - b2) g / (sqrt(1 - b2) |g| + eps) (b2 0.999),
    0.7597 with eps 1e-8 and 0.2403 with Keras's 1e-7; Adagrad (initial accumulator 0.1) by
    g / (sqrt(0.1 + g^2) + eps), which no epsilon this small moves: it only has to be passed on."""
    from tfrs_llmrec.training import make_optimizer

    def step(epsilon: float) -> float:
        config = TrainConfig(optimizer=optimizer, learning_rate=1.0, optimizer_epsilon=epsilon)
        built = make_optimizer(config, total_steps=10)
        variable = tf.Variable([0.0])
        built.apply_gradients([(tf.constant([1e-6]), variable)])
        assert built.get_config()["epsilon"] == pytest.approx(epsilon)
        return -float(variable[0])

    root = np.sqrt(1.0 - 0.999) * 1e-6
    expected = {1e-8: root / (root + 1e-8), 1e-7: root / (root + 1e-7)} if optimizer == "adam" else \
        {eps: 1e-6 / (np.sqrt(0.1 + 1e-12) + eps) for eps in (1e-8, 1e-7)}
    for epsilon, moved in expected.items():
        assert step(epsilon) == pytest.approx(moved, rel=1e-3)
    assert TrainConfig().optimizer_epsilon == 1e-7


def test_mixed_precision_trains_with_loss_scaling_and_float32_variables(tmp_path, single):
    from tfrs_llmrec.training import set_precision

    set_precision(True)
    try:
        model = two_tower()
        result = train(model, tmp_path, TrainConfig(epochs=2, mixed_precision=True, learning_rate=0.01),
                       Scripted([1, 2]), single)
        assert isinstance(model.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
        assert model.item_tower.compute_dtype == "float16"
        assert all(variable.dtype == tf.float32 for variable in model.trainable_variables)
        assert np.isfinite(result.history["loss"]).all() and result.history["loss"][1] < result.history["loss"][0]
    finally:
        set_precision(False)


def test_jit_compiled_loss_matches_the_plain_one(tmp_path, single):
    plain = two_tower(negatives=0)
    train(plain, tmp_path / "plain", TrainConfig(epochs=1), Scripted([1]), single)
    compiled = two_tower(negatives=0)
    compiled.jit_compile = True
    train(compiled, tmp_path / "jit", TrainConfig(epochs=1, jit_compile=True), Scripted([1]), single)
    np.testing.assert_allclose(compiled.item_embeddings(), plain.item_embeddings(), rtol=1e-4, atol=1e-5)


def test_determinism_turns_grappler_off_for_the_process():
    # With Grappler's rewrites on, AKT-Rec's and DIN's gradients on ML-100K differed in the last
    # bits between processes (tfrs_llmrec/training/optimizers.py); the twin-run test in
    # tests/cli/test_run_rankers.py checks the bits at a size where the drift did not show.
    from tfrs_llmrec.training import set_global_determinism

    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})
    set_global_determinism(7)
    assert tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer") is True
