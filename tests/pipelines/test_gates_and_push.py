"""The pipeline's pieces without running a pipeline: the gates, versioned atomic pushes, the
Pusher's refusals, the `pipeline:` config section and what each component's config holds."""

import json
import shutil

import pytest

from pipelines import gates, push
from tfrs_llmrec.config import ConfigError, load_experiment


# ------------------------------------------------------------------ gates

def test_model_is_blessed_only_with_the_margin_over_pop():
    assert gates.model_verdict("recall@20", 0.15, 0.10, 0.05, None, 0.01).blessed
    verdict = gates.model_verdict("recall@20", 0.149, 0.10, 0.05, None, 0.01)
    assert not verdict.blessed and "Pop" in verdict.reasons[0]
    assert not gates.model_verdict("recall@20", 0.09, 0.10, 0.0, None, 0.01).blessed


def test_model_is_compared_with_the_last_blessed_within_the_tolerance():
    baseline = gates.Baseline(value=0.20, model_id=7)
    assert gates.model_verdict("recall@20", 0.195, 0.10, 0.01, baseline, 0.01).blessed
    verdict = gates.model_verdict("recall@20", 0.185, 0.10, 0.01, baseline, 0.01)
    assert not verdict.blessed and "artifact 7" in verdict.reasons[1]
    # A baseline measured on other data is reported, not compared.
    other = gates.Baseline(value=0.90, model_id=7, comparable=False, why_not="another prepared dataset")
    verdict = gates.model_verdict("recall@20", 0.185, 0.10, 0.01, other, 0.01)
    assert verdict.blessed and "not compared" in verdict.reasons[1]


def test_index_blessing_follows_scann_recall():
    assert gates.index_verdict(0.95, 10, 0.9).blessed
    assert not gates.index_verdict(0.85, 10, 0.9).blessed
    assert gates.index_verdict(None, 10, 0.9).blessed  # no ScaNN index: BruteForce is exact


# ------------------------------------------------------------------ pushes

def make_export(root, content="a", parts=("retrieval", "retrieval_scann", "item_tower")):
    for part in parts:
        (root / part / "variables").mkdir(parents=True)
        (root / part / "saved_model.pb").write_text(f"{part}-{content}")
        (root / part / "variables" / "variables.index").write_text(content)
    (root / "export.json").write_text("{}")
    return root


def listing(base):
    return sorted(str(path.relative_to(base)) for path in base.glob("*/*"))


def test_versions_follow_the_largest_numeric_version_of_any_destination(tmp_path):
    base = tmp_path / "serving"
    (base / "m-scann" / "3").mkdir(parents=True)
    (base / "m" / "not-a-version").mkdir(parents=True)
    (base / "m" / ".1.partial-x").mkdir()
    result = push.push(make_export(tmp_path / "export"), base, "m")
    assert result.pushed and result.version == 4
    assert (base / "m" / "4" / "saved_model.pb").read_text() == "retrieval-a"
    assert (base / "m-scann" / "4" / "saved_model.pb").read_text() == "retrieval_scann-a"
    assert (base / "m-item-tower" / "4" / "variables" / "variables.index").read_text() == "a"
    assert result.destinations["retrieval"] == str(base / "m" / "4")
    assert not list(base.glob("*/.4*"))  # no staging directory left behind


def test_a_semantic_model_pushes_its_text_item_tower_too(tmp_path):
    base = tmp_path / "serving"
    parts = ("retrieval", "item_tower", "item_tower_text")
    result = push.push(make_export(tmp_path / "export", parts=parts), base, "m")
    assert listing(base) == ["m-item-tower-text/1", "m-item-tower/1", "m/1"]
    assert (base / "m-item-tower-text" / "1" / "saved_model.pb").read_text() == "item_tower_text-a"
    assert result.destinations["item_tower_text"] == str(base / "m-item-tower-text" / "1")


def test_an_identical_export_is_not_pushed_twice(tmp_path):
    base = tmp_path / "serving"
    first = push.push(make_export(tmp_path / "one"), base, "m")
    again = push.push(make_export(tmp_path / "same"), base, "m")
    assert (first.pushed, first.version) == (True, 1)
    assert (again.pushed, again.version) == (False, 1) and "already holds" in again.reason
    changed = push.push(make_export(tmp_path / "two", content="b"), base, "m")
    assert (changed.pushed, changed.version) == (True, 2)
    assert listing(base) == ["m-item-tower/1", "m-item-tower/2", "m-scann/1", "m-scann/2", "m/1", "m/2"]


def test_a_failed_push_leaves_no_version_behind(tmp_path, monkeypatch):
    base = tmp_path / "serving"
    push.push(make_export(tmp_path / "one"), base, "m")
    real_copytree = shutil.copytree

    def failing_copytree(source, target, *args, **kwargs):
        if source.name == "retrieval":  # the main model, published last
            raise OSError("disk full")
        return real_copytree(source, target, *args, **kwargs)

    monkeypatch.setattr(push.shutil, "copytree", failing_copytree)
    with pytest.raises(OSError, match="disk full"):
        push.push(make_export(tmp_path / "two", content="b"), base, "m")
    assert listing(base) == ["m-item-tower/1", "m-scann/1", "m/1"]
    assert not [path for path in base.glob("*/.*")]


def test_push_without_a_bruteforce_model_fails(tmp_path):
    with pytest.raises(push.PushError, match="retrieval"):
        push.push(make_export(tmp_path / "export", parts=("item_tower",)), tmp_path / "serving", "m")


# ------------------------------------------------------------------ the Pusher's refusals

def artifact(kind, artifact_id, uri, **properties):
    made = kind()
    made.id = artifact_id
    made.uri = str(uri)
    for key, value in properties.items():
        if isinstance(value, int):
            made.set_int_custom_property(key, value)
        else:
            made.set_string_custom_property(key, value)
    return made


def run_pusher(tmp_path, model_blessed=1, index_blessed=1, blessed_model_id=5):
    from pipelines import artifacts
    from pipelines.components.pusher import PusherExecutor

    export = make_export(tmp_path / "index")
    inputs = {
        "model": [artifact(artifacts.Model, 5, tmp_path / "model")],
        "index": [artifact(artifacts.RetrievalIndex, 6, export, model_id=5)],
        "model_blessing": [artifact(artifacts.ModelBlessing, 7, tmp_path / "mb", blessed=model_blessed,
                                    current_model_id=blessed_model_id, reasons=json.dumps(["model reason"]))],
        "index_blessing": [artifact(artifacts.IndexBlessing, 8, tmp_path / "ib", blessed=index_blessed, model_id=5,
                                    reasons=json.dumps(["index reason"]))]}
    pushed = artifact(artifacts.PushedModel, 9, tmp_path / "pushed")
    PusherExecutor().Do(inputs, {"pushed_model": [pushed]},
                        {"serving_base": str(tmp_path / "serving"), "model_name": "m"})
    return pushed, json.loads((tmp_path / "pushed" / "push.json").read_text())


@pytest.mark.parametrize("model_blessed, index_blessed, blessed_model_id, expected", [
    (0, 1, 5, "model not blessed: model reason"),
    (1, 0, 5, "index not blessed: index reason"),
    (1, 1, 4, "the model blessing is of model artefact 4, not of model 5"),
])
def test_pusher_pushes_nothing_without_both_blessings_of_this_model(tmp_path, model_blessed, index_blessed,
                                                                     blessed_model_id, expected):
    pushed, record = run_pusher(tmp_path, model_blessed, index_blessed, blessed_model_id)
    assert pushed.get_int_custom_property("pushed") == 0
    assert expected in record["reasons"]
    assert not (tmp_path / "serving").exists()


def test_pusher_records_version_and_destination(tmp_path):
    pushed, record = run_pusher(tmp_path)
    assert pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_string_custom_property("pushed_version") == "1"
    assert pushed.get_string_custom_property("pushed_destination") == str(tmp_path / "serving" / "m" / "1")
    assert record["pushed"] and record["version"] == 1
    assert (tmp_path / "serving" / "m-scann" / "1" / "saved_model.pb").is_file()


# ------------------------------------------------------------------ config

def test_pipeline_section_is_typed_and_rejects_unknown_keys(repo_root):
    demo = repo_root / "configs" / "demo.yaml"
    config = load_experiment(demo)
    assert (config.pipeline.metric, config.pipeline.serving_base, config.pipeline.model_name) == (
        "recall@20", "serving", None)
    with pytest.raises(ConfigError, match=r"pipeline\.min_gain: unknown key.*known keys: .*min_recall_gain_over_pop"):
        load_experiment(demo, ["pipeline.min_gain=0.1"])
    with pytest.raises(ConfigError, match=r"pipeline\.metric: expected recall@K"):
        load_experiment(demo, ["pipeline.metric=auc"])
    with pytest.raises(ConfigError, match=r"pipeline\.min_scann_recall: 1\.5 is out of range"):
        load_experiment(demo, ["pipeline.min_scann_recall=1.5"])


def test_paths_default_under_output_dir(repo_root, tmp_path):
    from pipelines.pipeline import layout

    config = load_experiment(repo_root / "configs" / "demo.yaml", [f"output_dir={tmp_path}"])
    paths = layout(config)
    assert paths.name == "demo-ml100k-two-tower" and paths.model_name == "demo-ml100k-two-tower"
    assert paths.pipeline_root == str(tmp_path / "pipelines" / "demo-ml100k-two-tower" / "root")
    assert paths.metadata_path == str(tmp_path / "pipelines" / "demo-ml100k-two-tower" / "metadata.sqlite")
    assert paths.serving_base == str(tmp_path / "serving")
    config = load_experiment(repo_root / "configs" / "demo.yaml",
                             ["output_dir=runs", "pipeline.serving_base=gs://bucket/models", "pipeline.model_name=recs"])
    compiled = layout(config, absolute=False)
    assert compiled.serving_base == "gs://bucket/models" and compiled.model_name == "recs"
    assert compiled.pipeline_root == "runs/pipelines/demo-ml100k-two-tower/root"


def test_each_component_gets_only_what_its_stage_reads(repo_root):
    from pipelines.pipeline import stage_configs

    demo = repo_root / "configs" / "demo.yaml"
    base = stage_configs(load_experiment(demo))
    gates_changed = stage_configs(load_experiment(demo, ["pipeline.min_recall_gain_over_pop=0.5",
                                                         "export.top_k=7"]))
    lr_changed = stage_configs(load_experiment(demo, ["train.learning_rate=0.01"]))
    assert gates_changed["train"] == base["train"] and gates_changed["ingest"] == base["ingest"]
    assert gates_changed["export"] != base["export"]  # a new top_k re-exports
    assert lr_changed["ingest"] == base["ingest"] and lr_changed["train"] != base["train"]
    assert all(config.pipeline == base["train"].pipeline for config in gates_changed.values())


def test_a_baseline_trained_on_other_data_is_reported_not_compared(tmp_path, repo_root):
    from pipelines import artifacts
    from pipelines.components.evaluator import evaluate_baseline
    from tfrs_llmrec.config import dump_yaml

    demo = repo_root / "configs" / "demo.yaml"
    baseline_dir = tmp_path / "baseline" / "Format-Serving"
    baseline_dir.mkdir(parents=True)
    (baseline_dir / "config.yaml").write_text(dump_yaml(load_experiment(demo, ["data.k_core=10"])))
    model = artifact(artifacts.Model, 2, tmp_path / "model")
    baseline_model = artifact(artifacts.Model, 1, tmp_path / "baseline")
    found = evaluate_baseline(load_experiment(demo), model, baseline_model, 0.2, "recall@20", tmp_path, None)
    assert (found.comparable, found.model_id) == (False, 1) and "another prepared dataset" in found.why_not
    assert not gates.model_verdict("recall@20", 0.2, 0.1, 0.01, found, 0.01).reasons[1].startswith("recall")
    # The model itself as its own baseline (a rerun) compares equal without evaluating anything.
    same = evaluate_baseline(load_experiment(demo), model, model, 0.2, "recall@20", tmp_path, None)
    assert (same.comparable, same.value) == (True, 0.2)
