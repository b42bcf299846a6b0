"""Compiling the pipeline for Kubeflow Pipelines v2 (Vertex AI) offline: a PipelineJob JSON."""

import json

import pytest
from google.protobuf import json_format

from tfrs_llmrec.config import ConfigError, load_experiment

IMAGE = "registry.example.com/llmrec-trainer:test"
COMPONENTS = ("Ingest", "Trainer", "Evaluator", "IndexBuilder", "Pusher")
RESOLVER_TASKS = ("latest_blessed_model_resolver-model-blessing-resolver",
                  "latest_blessed_model_resolver-model-resolver")


def compile_config(tmp_path, repo_root, config_file, *overrides, image=IMAGE):
    from kfp.pipeline_spec import pipeline_spec_pb2

    from pipelines.runner import compile_kubeflow

    config = load_experiment(repo_root / "configs" / config_file,
                             ["pipeline.pipeline_root=gs://bucket/root", "pipeline.serving_base=gs://bucket/serving",
                              *overrides])
    path = compile_kubeflow(config, tmp_path / "out" / "pipeline.json", image=image,
                            beam_pipeline_args=["--runner=DataflowRunner", "--region=europe-west4"])
    job = json.loads(path.read_text())
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    return path, job, spec


def test_compiled_job_has_every_component_on_the_image(tmp_path, repo_root):
    path, job, spec = compile_config(tmp_path, repo_root, "demo.yaml")
    assert path == tmp_path / "out" / "pipeline.json"
    assert job["displayName"] == spec.pipeline_info.name == "demo-ml100k-two-tower"
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/root"
    tasks = spec.root.dag.tasks
    assert set(tasks) == {*COMPONENTS, *RESOLVER_TASKS}  # no SemanticFeatures for the ID two-tower
    assert set(tasks["Pusher"].dependent_tasks) >= {"Evaluator", "IndexBuilder", "Trainer"}
    assert "latest_blessed_model_resolver-model-resolver" in tasks["Evaluator"].dependent_tasks

    executors = spec.deployment_spec["executors"]
    containers = {label: executor["container"] for label, executor in executors.items() if "container" in executor}
    assert set(containers) == {f"{name}_executor" for name in COMPONENTS}
    assert {container["image"] for container in containers.values()} == {IMAGE}
    assert "pipelines.components.trainer.TrainerExecutor" in containers["Trainer_executor"]["args"]
    assert "--runner=DataflowRunner" in containers["Ingest_executor"]["args"]
    blessing_query = executors[f"{RESOLVER_TASKS[0]}_executor"]["resolver"]["outputArtifactQueries"]
    assert "metadata.blessed.number_value=1" in blessing_query["model_blessing"]["filter"]

    parameters = spec.components["Pusher"].input_definitions.parameters
    assert set(parameters) >= {"serving_base", "model_name"}
    pusher_inputs = spec.root.dag.tasks["Pusher"].inputs.parameters
    assert pusher_inputs["serving_base"].runtime_value.constant_value.string_value == "gs://bucket/serving"


def test_semantic_models_compile_with_the_features_job(tmp_path, repo_root):
    _, _, spec = compile_config(tmp_path, repo_root, "ml100k_motir.yaml")
    tasks = spec.root.dag.tasks
    assert set(tasks) == {*COMPONENTS, "SemanticFeatures", *RESOLVER_TASKS}
    assert "SemanticFeatures" in tasks["Trainer"].dependent_tasks
    assert "SemanticFeatures" in tasks["Evaluator"].dependent_tasks


def test_the_gate_metric_must_be_evaluated(tmp_path, repo_root):
    with pytest.raises(ConfigError, match=r"pipeline\.metric: recall@20 needs 20 in eval\.ks"):
        compile_config(tmp_path, repo_root, "demo.yaml", "eval.ks=[10]")


def test_a_ranker_config_is_refused_naming_the_model(tmp_path, repo_root):
    with pytest.raises(ConfigError, match=r"model\.name: din is a CTR ranker"):
        compile_config(tmp_path, repo_root, "ml100k_din.yaml")


def test_image_defaults_to_the_config(tmp_path, repo_root):
    _, _, spec = compile_config(tmp_path, repo_root, "demo.yaml", "pipeline.image=llmrec:from-config", image=None)
    images = {executor["container"]["image"] for executor in spec.deployment_spec["executors"].values()
              if "container" in executor}
    assert images == {"llmrec:from-config"}
