import json

import numpy as np
import tensorflow as tf

from tfrs_llmrec.config.schema import ModelConfig, TowerConfig, TrainConfig
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, PAD_ITEM, USER_INDEX
from tfrs_llmrec.models import TwoTowerModel
from tfrs_llmrec.training import fit_with_validation, make_optimizer, set_global_determinism


def dataset():
    users = np.arange(64) % 8
    return tf.data.Dataset.from_tensor_slices(
        {USER_INDEX: users, ITEM_INDEX: (users * 2) % 16, HISTORY: np.full((64, 2), PAD_ITEM)}).batch(16)


def new_model(seed=0, learning_rate=0.01):
    set_global_determinism(seed)
    model = TwoTowerModel(8, 16, np.ones(16), ModelConfig(tower=TowerConfig(dim=4)))
    model.compile(make_optimizer(TrainConfig(learning_rate=learning_rate), total_steps=16))
    return model


class Scripted:
    """A monitor returning preset values, recording the item table it saw each epoch."""

    def __init__(self, values):
        self.values = list(values)
        self.seen = []

    def __call__(self, model):
        self.seen.append(model.item_embeddings().copy())
        return self.values[len(self.seen) - 1]


def test_early_stopping_and_best_weights_restored(tmp_path):
    model = new_model()
    monitor = Scripted([0.1, 0.5, 0.4, 0.3, 0.2, 0.1])
    result = fit_with_validation(model, dataset(), TrainConfig(epochs=6, early_stopping_patience=2),
                                 tmp_path, monitor)
    assert result.epochs_completed == 4  # epochs 3 and 4 did not improve on epoch 2
    assert result.stopped_early and result.best_epoch == 2 and result.best_value == 0.5
    assert result.history["val_recall@20"] == [0.1, 0.5, 0.4, 0.3]
    np.testing.assert_allclose(model.item_embeddings(), monitor.seen[1], rtol=1e-6)


def test_resume_continues_from_latest_checkpoint(tmp_path):
    straight = new_model()
    fit_with_validation(straight, dataset(), TrainConfig(epochs=4), tmp_path / "straight", Scripted([1, 2, 3, 4]))

    first = new_model()
    fit_with_validation(first, dataset(), TrainConfig(epochs=2), tmp_path / "resumed", Scripted([1, 2]))
    state = json.loads((tmp_path / "resumed" / "train_state.json").read_text())
    assert state["epochs_completed"] == 2
    second = new_model(seed=99)  # different init: everything must come from the checkpoint
    result = fit_with_validation(second, dataset(), TrainConfig(epochs=4), tmp_path / "resumed", Scripted([3, 4]))
    assert result.resumed_from_epoch == 2 and result.epochs_completed == 4
    assert result.history["val_recall@20"] == [1, 2, 3, 4]
    np.testing.assert_allclose(second.item_embeddings(), straight.item_embeddings(), rtol=1e-5, atol=1e-6)


def test_finished_run_is_not_retrained(tmp_path):
    model = new_model()
    fit_with_validation(model, dataset(), TrainConfig(epochs=1), tmp_path, Scripted([0.3]))
    again = Scripted([])
    result = fit_with_validation(new_model(), dataset(), TrainConfig(epochs=1), tmp_path, again)
    assert again.seen == [] and result.epochs_completed == 1


def test_same_seed_same_numbers(tmp_path):
    runs = []
    for name in ("a", "b"):
        model = new_model(seed=5)
        fit_with_validation(model, dataset().shuffle(64, seed=1), TrainConfig(epochs=2), tmp_path / name,
                            Scripted([1, 2]))
        runs.append(model.item_embeddings())
    np.testing.assert_array_equal(runs[0], runs[1])


def test_learning_rate_decays_to_final_value():
    optimizer = make_optimizer(TrainConfig(learning_rate=1e-3, final_learning_rate=1e-4), total_steps=100)
    schedule = optimizer._learning_rate
    assert abs(float(schedule(0)) - 1e-3) < 1e-9
    assert abs(float(schedule(100)) - 1e-4) < 1e-9
