"""The TFX pipeline end to end on MovieLens-100K with LocalDagRunner and SQLite ML Metadata.

One module-scoped sequence of runs in one pipeline root and store, as a user would make them:
  first       the demo config (one epoch)            -> blessed, pushes version 1
  same        the same config again                  -> cached but the Evaluator, nothing new pushed
  same_again  and again                              -> cached whole
  retrained   another learning rate                  -> retrained, blessed, pushes version 2
  untrained   learning rate 0 (worse than Pop)       -> not blessed, nothing pushed
and, in its own directory, a run whose Beam job fails.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from tfrs_llmrec.config import load_experiment

REPO_ROOT = Path(__file__).resolve().parents[2]
NAME = "demo-ml100k-two-tower"
STAGES = ("Ingest", "Trainer", "Evaluator", "IndexBuilder", "Pusher")


def demo_config(repo_root, output_dir, *overrides):
    return load_experiment(repo_root / "configs" / "demo.yaml", [
        f"output_dir={output_dir}", "train.epochs=1", "eval.ks=[10, 20]", "export.top_k=10",
        "export.recall_sample_users=200", "export.scann_num_leaves=10", "export.scann_num_leaves_to_search=10",
        *overrides])


def serving_listing(base):
    """Every entry two levels down, hidden ones included (staging directories must not linger)."""
    if not base.exists():
        return []
    return sorted(f"{model.name}/{version.name}" for model in base.iterdir() for version in model.iterdir())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from pipelines.runner import run_local

    root = tmp_path_factory.mktemp("pipeline")
    base = root / "serving"
    results, listings = {}, {}
    for label, overrides in (("first", ()), ("same", ()), ("same_again", ()),
                             ("retrained", ("train.learning_rate=0.002",)),
                             ("untrained", ("train.learning_rate=0.0",))):
        results[label] = run_local(demo_config(REPO_ROOT, root, *overrides))
        listings[label] = serving_listing(base)
    return {"root": root, "base": base, "results": results, "listings": listings,
            "metadata": root / "pipelines" / NAME / "metadata.sqlite"}


# ------------------------------------------------------------------ ML Metadata helpers

def store_of(runs):
    from pipelines.runner import open_store

    return open_store(runs["metadata"])


def type_name(store, artifact):
    return store.get_artifact_types_by_id([artifact.type_id])[0].name


def node_of(store, execution):
    node_type = store.get_context_type("node").id
    nodes = [c.name for c in store.get_contexts_by_execution(execution.id) if c.type_id == node_type]
    return nodes[0].split(".", 1)[1]


def producer(store, artifact_id):
    """The execution that output `artifact_id` first (a cached execution re-outputs the same artifact)."""
    from ml_metadata.proto import metadata_store_pb2

    events = [e for e in store.get_events_by_artifact_ids([artifact_id]) if e.type == metadata_store_pb2.Event.OUTPUT]
    return store.get_executions_by_id([min(e.execution_id for e in events)])[0]


def inputs_of(store, execution):
    """{input key: [artifacts]} of an execution, from its INPUT events."""
    from ml_metadata.proto import metadata_store_pb2

    found = {}
    for event in store.get_events_by_execution_ids([execution.id]):
        if event.type == metadata_store_pb2.Event.INPUT:
            key = event.path.steps[0].key
            found.setdefault(key, []).extend(store.get_artifacts_by_id([event.artifact_id]))
    return found


def outputs_in_run(store, run_id, node):
    """{output key: artifact} of `node`'s execution in run `run_id`."""
    from ml_metadata.proto import metadata_store_pb2

    run = store.get_context_by_type_and_name("pipeline_run", run_id)
    (execution,) = [e for e in store.get_executions_by_context(run.id) if node_of(store, e) == node]
    found = {}
    for event in store.get_events_by_execution_ids([execution.id]):
        if event.type == metadata_store_pb2.Event.OUTPUT:
            found[event.path.steps[0].key] = store.get_artifacts_by_id([event.artifact_id])[0]
    return execution, found


def custom(artifact, key):
    value = artifact.custom_properties[key]
    return getattr(value, value.WhichOneof("value"))


# ------------------------------------------------------------------ 1. the first run pushes a servable model

def test_first_run_pushes_version_1_of_every_servable(runs):
    first = runs["results"]["first"]
    assert first.pushed and first.version == 1 and first.model_blessed and first.index_blessed
    assert first.destination == str(runs["base"] / NAME / "1")
    assert runs["listings"]["first"] == [f"{NAME}-item-tower/1", f"{NAME}-scann/1", f"{NAME}/1"]
    assert all(state == "COMPLETE" for state in first.executions.values()), first.executions
    # No SemanticFeatures: the ID two-tower and Pop read no semantic vectors.
    assert sorted(first.executions) == ["Evaluator", "IndexBuilder", "Ingest", "Pusher", "Trainer",
                                        "latest_blessed_model_resolver"]


def test_pushed_savedmodel_serves_item_ids(runs):
    import tensorflow as tf

    from tfrs_llmrec.data.dataset import PreparedDataset
    from tfrs_llmrec.serving.export import HISTORY_IDS, ITEM_IDS, USER_ID

    store = store_of(runs)
    (examples,) = store.get_artifacts_by_type("Examples")
    dataset = PreparedDataset.open(f"{examples.uri}/{custom(examples, 'dataset_dir')}")
    item_ids, user_ids = dataset.item_ids(), dataset.user_ids()
    history = np.array([[item_ids[0], item_ids[1], item_ids[2]], [item_ids[3], "", ""]])

    serving = tf.saved_model.load(str(runs["base"] / NAME / "1")).signatures["serving_default"]
    returned = serving(**{USER_ID: tf.constant([user_ids[0], user_ids[1]]), HISTORY_IDS: tf.constant(history)})
    found = returned[ITEM_IDS].numpy().astype(str)
    assert found.shape == (2, 10)
    assert set(found.ravel()) <= set(item_ids)
    assert not set(found[0]) & set(history[0]) and item_ids[3] not in found[1]  # history is excluded
    assert (runs["base"] / f"{NAME}-scann" / "1" / "saved_model.pb").is_file()
    assert (runs["base"] / f"{NAME}-item-tower" / "1" / "saved_model.pb").is_file()


# ------------------------------------------------------------------ 2. lineage in ML Metadata

def test_lineage_from_the_pushed_model_back_to_ingest(runs):
    store = store_of(runs)
    _, outputs = outputs_in_run(store, runs["results"]["first"].run_id, "Pusher")
    pushed = outputs["pushed_model"]
    assert custom(pushed, "pushed") == 1 and custom(pushed, "pushed_version") == "1"

    pusher = producer(store, pushed.id)
    assert node_of(store, pusher) == "Pusher"
    pusher_inputs = inputs_of(store, pusher)
    assert sorted(pusher_inputs) == ["index", "index_blessing", "model", "model_blessing"]
    (model,) = pusher_inputs["model"]
    (index,) = pusher_inputs["index"]
    (blessing,) = pusher_inputs["model_blessing"]
    assert type_name(store, model) == "Model" and type_name(store, index) == "llmrec.RetrievalIndex"
    assert custom(blessing, "blessed") == 1 and custom(blessing, "current_model_id") == model.id

    index_builder = producer(store, index.id)
    assert node_of(store, index_builder) == "IndexBuilder"
    assert [a.id for a in inputs_of(store, index_builder)["model"]] == [model.id]
    evaluator = producer(store, blessing.id)
    assert node_of(store, evaluator) == "Evaluator"
    assert [a.id for a in inputs_of(store, evaluator)["model"]] == [model.id]

    trainer = producer(store, model.id)
    assert node_of(store, trainer) == "Trainer"
    (examples,) = inputs_of(store, trainer)["examples"]
    assert type_name(store, examples) == "Examples"
    assert [a.id for a in inputs_of(store, evaluator)["examples"]] == [examples.id]
    ingest = producer(store, examples.id)
    assert node_of(store, ingest) == "Ingest" and inputs_of(store, ingest) == {}
    assert custom(examples, "dataset_dir").startswith("datasets/ml-100k-")
    assert Path(examples.uri, custom(examples, "dataset_dir"), "manifest.json").is_file()


# ------------------------------------------------------------------ 3. cache and versions

def test_same_config_again_is_cached_and_pushes_nothing_new(runs):
    same = runs["results"]["same"]
    for node in ("Ingest", "Trainer", "IndexBuilder"):
        assert same.executions[node] == "CACHED", same.executions
    # The Evaluator re-ran: its baseline input, the last blessed model, is now the first run's
    # model, which is this very model (the Trainer's cached output).
    assert same.executions["Evaluator"] == "COMPLETE"
    store = store_of(runs)
    _, first_model = outputs_in_run(store, runs["results"]["first"].run_id, "Trainer")
    _, same_model = outputs_in_run(store, same.run_id, "Trainer")
    assert same_model["model"].id == first_model["model"].id
    _, evaluation = outputs_in_run(store, same.run_id, "Evaluator")
    assert custom(evaluation["blessing"], "baseline_model_id") == first_model["model"].id
    assert not same.pushed and same.version == 1
    assert runs["listings"]["same"] == runs["listings"]["first"]


def test_third_identical_run_is_cached_whole(runs):
    again = runs["results"]["same_again"]
    assert {node: state for node, state in again.executions.items() if node in STAGES} == {
        node: "CACHED" for node in STAGES}
    assert not again.pushed and again.version == 1
    assert runs["listings"]["same_again"] == runs["listings"]["first"]


def test_changed_training_config_retrains_and_pushes_version_2(runs):
    retrained = runs["results"]["retrained"]
    assert retrained.executions["Ingest"] == "CACHED"
    assert retrained.executions["Trainer"] == "COMPLETE"
    assert retrained.pushed and retrained.version == 2
    assert retrained.destination == str(runs["base"] / NAME / "2")
    assert runs["listings"]["retrained"] == [f"{NAME}-item-tower/1", f"{NAME}-item-tower/2", f"{NAME}-scann/1",
                                             f"{NAME}-scann/2", f"{NAME}/1", f"{NAME}/2"]
    first_variables = (runs["base"] / NAME / "1" / "variables" / "variables.data-00000-of-00001").read_bytes()
    second_variables = (runs["base"] / NAME / "2" / "variables" / "variables.data-00000-of-00001").read_bytes()
    assert first_variables != second_variables


# ------------------------------------------------------------------ 4. an unblessed model is not pushed

def test_model_worse_than_pop_is_not_blessed_and_not_pushed(runs):
    untrained = runs["results"]["untrained"]
    assert untrained.executions["Trainer"] == "COMPLETE" and untrained.executions["Pusher"] == "COMPLETE"
    assert untrained.model_blessed is False and not untrained.pushed and untrained.version is None
    assert any("from Pop's" in reason for reason in untrained.reasons), untrained.reasons
    # The last blessed model (the retrained one) was evaluated again on the same data.
    assert any("below the last blessed model's 0." in reason for reason in untrained.reasons), untrained.reasons
    assert runs["listings"]["untrained"] == runs["listings"]["retrained"]

    store = store_of(runs)
    _, evaluation = outputs_in_run(store, untrained.run_id, "Evaluator")
    blessing = evaluation["blessing"]
    assert custom(blessing, "blessed") == 0
    assert Path(blessing.uri, "NOT_BLESSED").is_file() and not Path(blessing.uri, "BLESSED").exists()
    metrics = json.loads(Path(evaluation["evaluation"].uri, "metrics.json").read_text())
    model, pop = (metrics["models"][name]["summary"]["overall"]["recall@20"] for name in ("two_tower", "pop"))
    assert model < pop
    _, pushed = outputs_in_run(store, untrained.run_id, "Pusher")
    assert custom(pushed["pushed_model"], "pushed") == 0


# ------------------------------------------------------------------ a failed run

def test_a_failed_run_pushes_nothing_and_beam_args_reach_the_beam_jobs(tmp_path, repo_root):
    from ml_metadata.proto import metadata_store_pb2

    from pipelines.runner import open_store, run_local

    with pytest.raises(Exception, match="NoSuchRunner"):
        run_local(demo_config(repo_root, tmp_path), beam_pipeline_args=["--runner=NoSuchRunner"])
    assert not (tmp_path / "serving").exists()
    store = open_store(tmp_path / "pipelines" / NAME / "metadata.sqlite")
    states = {node_of(store, e): e.last_known_state for e in store.get_executions()}
    assert states == {"Ingest": metadata_store_pb2.Execution.FAILED}
