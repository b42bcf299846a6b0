"""Running the pipeline here (LocalDagRunner, SQLite ML Metadata) or compiling it for Kubeflow.

    run_local(config)                      -> RunResult (what was pushed, the blessings, each node's state)
    compile_kubeflow(config, output_path)  -> the PipelineJob JSON's path (Kubeflow Pipelines v2 / Vertex AI)

`llmrec pipeline run CONFIG` and `llmrec pipeline compile CONFIG --output pipeline.json [--image IMAGE]`
call these two and print what they return.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from pipelines import artifacts
from pipelines.pipeline import create_pipeline, layout
from tfrs_llmrec.config import ExperimentConfig


@dataclass
class RunResult:
    """One local run, read back from ML Metadata."""

    pipeline_name: str
    run_id: str
    metadata_path: str
    pushed: bool = False
    version: Optional[int] = None
    destination: Optional[str] = None
    model_blessed: Optional[bool] = None
    index_blessed: Optional[bool] = None
    reasons: List[str] = field(default_factory=list)
    # node id -> execution state (COMPLETE, CACHED, FAILED, ...)
    executions: Dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.pushed:
            head = f"pushed version {self.version} to {self.destination}"
        elif self.version is not None:
            head = f"nothing new pushed: version {self.version} at {self.destination} already serves this model"
        else:
            head = "nothing pushed"
        lines = [f"pipeline {self.pipeline_name} run {self.run_id}: {head}"]
        lines += [f"  {reason}" for reason in self.reasons]
        lines.append("  steps: " + ", ".join(f"{node} {state.lower()}" for node, state in self.executions.items()))
        lines.append(f"  ML Metadata: {self.metadata_path}")
        return "\n".join(lines)


def open_store(metadata_path):
    """A read handle on a local pipeline's ML Metadata (SQLite)."""
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = str(metadata_path)
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return mlmd.MetadataStore(connection)


def _custom(artifact, key):
    value = artifact.custom_properties.get(key)
    if value is None:
        return None
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


def read_run(metadata_path, name: str, run_id: Optional[str] = None) -> RunResult:
    """The outcome of a run of pipeline `name` (the latest one unless `run_id`) from its ML Metadata."""
    from ml_metadata.proto import metadata_store_pb2

    store = open_store(metadata_path)
    runs = [context for context in store.get_contexts_by_type("pipeline_run")
            if run_id is None or context.name == run_id]
    pipeline = store.get_context_by_type_and_name("pipeline", name)
    if pipeline is None:
        raise LookupError(f"{metadata_path}: no pipeline {name!r}")
    in_pipeline = {execution.id for execution in store.get_executions_by_context(pipeline.id)}
    runs = [run for run in runs if any(execution.id in in_pipeline for execution in store.get_executions_by_context(run.id))]
    if not runs:
        raise LookupError(f"{metadata_path}: no run of pipeline {name!r}")
    run = max(runs, key=lambda context: context.id)
    result = RunResult(pipeline_name=name, run_id=run.name, metadata_path=str(metadata_path))
    executions = sorted(store.get_executions_by_context(run.id), key=lambda execution: execution.id)
    node_type = store.get_context_type("node").id
    for execution in executions:
        nodes = [context for context in store.get_contexts_by_execution(execution.id) if context.type_id == node_type]
        node = nodes[0].name.split(".", 1)[-1] if nodes else str(execution.id)
        result.executions[node] = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
    outputs = [event for event in store.get_events_by_execution_ids([execution.id for execution in executions])
               if event.type == metadata_store_pb2.Event.OUTPUT]
    produced = store.get_artifacts_by_id([event.artifact_id for event in outputs])
    type_names = {artifact_type.id: artifact_type.name for artifact_type in store.get_artifact_types()}
    for artifact in produced:
        type_name = type_names[artifact.type_id]
        reasons = json.loads(_custom(artifact, artifacts.REASONS) or "[]")
        if type_name == artifacts.ModelBlessing.TYPE_NAME:
            result.model_blessed = _custom(artifact, artifacts.BLESSED) == 1
            result.reasons += [f"model: {reason}" for reason in reasons]
        elif type_name == artifacts.IndexBlessing.TYPE_NAME:
            result.index_blessed = _custom(artifact, artifacts.BLESSED) == 1
            result.reasons += [f"index: {reason}" for reason in reasons]
        elif type_name == artifacts.PushedModel.TYPE_NAME:
            result.pushed = _custom(artifact, artifacts.PUSHED) == 1
            version = _custom(artifact, artifacts.PUSHED_VERSION)
            result.version = int(version) if version else None
            result.destination = _custom(artifact, artifacts.PUSHED_DESTINATION)
            # Refusals repeat the blessings' reasons, listed already.
            result.reasons += [f"push: {reason}" for reason in reasons
                               if not reason.startswith(("model not blessed", "index not blessed"))]
    return result


class _DropResolverNoise(logging.Filter):
    """TFX 1.21's input resolution warns on every artifact query that it ignores a property
    predicate: it tests the unset sub-message for truth, which a protobuf message always is.
    Nothing is ignored, so the run's log leaves the warning out."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "property_predicate is not supported" not in record.getMessage()


_RESOLVER_NOISE = _DropResolverNoise()


def run_local(config: ExperimentConfig, beam_pipeline_args: Sequence[str] = (), pipeline_root=None,
              metadata_path=None, serving_base=None, enable_cache: bool = True) -> RunResult:
    """Runs the pipeline with TFX's LocalDagRunner (components one after another in this process;
    the Beam jobs on the runner `beam_pipeline_args` name, DirectRunner by default)."""
    from tfx import v1 as tfx

    pipeline = create_pipeline(config, pipeline_root, metadata_path, beam_pipeline_args, serving_base,
                               enable_cache=enable_cache)
    absl_logger = logging.getLogger("absl")
    absl_logger.addFilter(_RESOLVER_NOISE)
    try:
        tfx.orchestration.LocalDagRunner().run(pipeline)
    finally:
        absl_logger.removeFilter(_RESOLVER_NOISE)
    paths = layout(config, pipeline_root, metadata_path, serving_base)
    return read_run(paths.metadata_path, paths.name)


def compile_kubeflow(config: ExperimentConfig, output_path, image: Optional[str] = None,
                     beam_pipeline_args: Sequence[str] = (), pipeline_root=None, serving_base=None) -> Path:
    """Writes the pipeline as a Kubeflow Pipelines v2 PipelineJob JSON (also what Vertex AI Pipelines
    runs), every step in `image` (default pipeline.image). Nothing is contacted. Returns its path.

    The steps read and write the filesystem: set pipeline.pipeline_root and pipeline.serving_base to
    paths every step container sees (on Vertex AI, gs:// paths, read through Cloud Storage FUSE)."""
    from tfx import v1 as tfx

    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    pipeline = create_pipeline(config, pipeline_root, None, beam_pipeline_args, serving_base, for_kubeflow=True)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image or config.pipeline.image),
        output_dir=str(output_path.parent), output_filename=output_path.name)
    runner.run(pipeline, write_out=True)
    return output_path
