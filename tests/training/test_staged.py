import numpy as np
import tensorflow as tf

from tfrs_llmrec.config.schema import ModelConfig, MotirConfig, SemanticTowerConfig, TowerConfig, TrainConfig
from tfrs_llmrec.data.epochs import TrainingEpochs
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, PAD_ITEM, USER_INDEX
from tfrs_llmrec.models import StagePlan
from tfrs_llmrec.models.motir import MotiRModel
from tfrs_llmrec.training import StrategyDistribution, build_variables, fit_stages, set_global_determinism, stage_dir

NUM_USERS, NUM_ITEMS = 8, 16
SINGLE = StrategyDistribution(tf.distribute.get_strategy(), "single")


def dataset():
    users = np.arange(64) % NUM_USERS
    records = {USER_INDEX: users, ITEM_INDEX: (users * 2) % NUM_ITEMS, HISTORY: np.full((64, 2), PAD_ITEM)}
    return TrainingEpochs(tf.data.Dataset.from_tensor_slices(records), 64, 16, seed=0, shuffle_buffer=64)


def new_model(seed=0):
    set_global_determinism(seed)
    config = ModelConfig(name="motir", tower=TowerConfig(dim=4), semantic=SemanticTowerConfig(hidden_dims=[8]),
                         motir=MotirConfig(gate="scalar"))
    vectors = np.random.default_rng(seed).normal(size=(NUM_ITEMS, 6)).astype(np.float32)
    model = MotiRModel(NUM_USERS, vectors, np.ones(NUM_ITEMS), config, seed=0)
    build_variables(model, dataset().sample_batch(), ["joint"])
    tf.keras.utils.set_random_seed(0)  # the data order follows the config's seed, not the init's
    return model


def fit(model, plans, root):
    return fit_stages(model, plans, dataset(), root, SINGLE, ranking_metrics=lambda m: {})


def snapshot(model):
    return {"id": [w.numpy().copy() for w in model.item_tower.weights + model.query_tower.weights],
            "semantic": [w.numpy().copy() for w in model.semantic_tower.mlp.weights],
            "gate": [w.numpy().copy() for w in model.gate.weights]}


def same(first, second):
    return all(np.array_equal(a, b) for a, b in zip(first, second))


class Scripted:
    """Returns preset monitor values and records the model's weights at each epoch end."""

    def __init__(self, values):
        self.values, self.seen = list(values), []

    def __call__(self, model):
        self.seen.append(snapshot(model))
        return self.values[len(self.seen) - 1]


def stages(monitors, epochs=(2, 3, 2), stop_at=None):
    """The first len(monitors) of MotiR's three stages."""
    settings = [("id", {}), ("align", {"monitor_name": "mean_cosine", "stop_at": stop_at}), ("joint", {})]
    return [StagePlan(name, TrainConfig(epochs=count, learning_rate=0.05, early_stopping_patience=5), monitor, **extra)
            for (name, extra), count, monitor in zip(settings, epochs, monitors)]


def test_stages_start_from_the_previous_best_and_freeze_the_right_parts(tmp_path):
    model = new_model()
    initial = snapshot(model)
    monitors = [Scripted([0.5, 0.4]), Scripted([0.1, 0.3, 0.2]), Scripted([0.2, 0.6])]
    results = fit(model, stages(monitors), tmp_path)
    stage1, stage2, stage3 = (monitor.seen for monitor in monitors)

    # Stage 1 trained the ID towers only; its best epoch (1) is what stage 2 starts from.
    assert not same(stage1[0]["id"], initial["id"])
    assert same(stage1[1]["semantic"], initial["semantic"]) and same(stage1[1]["gate"], initial["gate"])
    assert results["id"].best_epoch == 1
    for epoch in stage2:
        assert same(epoch["id"], stage1[0]["id"]) and same(epoch["gate"], initial["gate"])
    assert not same(stage2[0]["semantic"], initial["semantic"])

    # Stage 3 starts from stage 2's best epoch (2) and trains everything.
    assert results["align"].best_epoch == 2 and results["align"].history["val_mean_cosine"] == [0.1, 0.3, 0.2]
    for part in ("id", "semantic", "gate"):
        assert not same(stage3[0][part], stage2[1][part]), part
    assert results["joint"].best_epoch == 2 and model.stage == "joint"
    for part in ("id", "semantic", "gate"):
        assert same(snapshot(model)[part], stage3[1][part]), part


def test_alignment_stops_at_the_threshold(tmp_path):
    monitor = Scripted([0.2, 0.56, 0.7])
    results = fit(new_model(), stages([Scripted([0.5]), monitor], epochs=(1, 3, 1), stop_at=0.55), tmp_path)
    assert results["align"].epochs_completed == 2 and results["align"].stopped_early
    assert len(monitor.seen) == 2


def test_resume_skips_finished_stages_and_restores_their_best_weights(tmp_path):
    first = new_model()
    two = [Scripted([0.5, 0.4]), Scripted([0.1, 0.3, 0.2])]
    fit(first, stages(two), tmp_path)
    after_two = snapshot(first)

    resumed = new_model(seed=7)  # other initial weights: everything must come from the checkpoints
    monitors = [Scripted([]), Scripted([]), Scripted([0.2, 0.6])]
    results = fit(resumed, stages(monitors), tmp_path)
    assert not monitors[0].seen and not monitors[1].seen  # finished stages do not train again
    assert results["id"].resumed_from_step == 8 and results["align"].resumed_from_step == 12
    assert results["joint"].resumed_from_step == 0
    assert list((stage_dir(tmp_path, 3, "joint") / "latest").glob("step-*/state.json"))

    # What stage 3 started from is stage 2's best: same as in the uninterrupted process.
    restart = new_model(seed=9)
    fit(restart, stages([Scripted([]), Scripted([])]), tmp_path)
    for part in ("id", "semantic", "gate"):
        assert same(snapshot(restart)[part], after_two[part]), part
