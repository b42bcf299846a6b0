"""Ingest and SemanticFeatures: the Beam jobs (beam_jobs/) as TFX Beam components.

They run on whatever runner the pipeline's `beam_pipeline_args` name (DirectRunner by default,
Flink, Dataflow), because the executors hand those arguments to the stage functions unchanged.
"""

from __future__ import annotations

from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_beam_component, base_beam_executor, base_executor, executor_spec
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipelines import artifacts
from pipelines.components.common import CONFIG, decode_config, log

EXAMPLES = "examples"
FEATURES = "semantic_features"


class _StageBeamExecutor(base_beam_executor.BaseBeamExecutor):
    """A Beam executor that passes the pipeline's Beam arguments to our own Beam jobs verbatim.

    TFX's BaseBeamExecutor would add `--extra_package=<an sdist of TFX>` (built on the spot) and
    telemetry labels; our jobs need our package on the workers instead, which the image
    (`--sdk_container_image`) or `--setup_file` in the pipeline's Beam arguments provides."""

    def __init__(self, context=None):
        base_executor.BaseExecutor.__init__(self, context)
        self._beam_pipeline_args = list(getattr(context, "beam_pipeline_args", None) or [])
        self._make_beam_pipeline_fn = None


class IngestSpec(ComponentSpec):
    PARAMETERS = {CONFIG: ExecutionParameter(type=str)}
    INPUTS: Dict[str, ChannelParameter] = {}
    OUTPUTS = {EXAMPLES: ChannelParameter(type=artifacts.Examples)}


class IngestExecutor(_StageBeamExecutor):
    """stages.ingest into the Examples artefact's URI; records where the prepared dataset is."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        from tfx.components.util import examples_utils
        from tfx.proto import example_gen_pb2

        from tfrs_llmrec.config import config_hash
        from tfrs_llmrec.data.dataset import PreparedDataset
        from tfrs_llmrec.workflow import stages

        config = decode_config(exec_properties[CONFIG])
        examples = artifacts.single(output_dict[EXAMPLES])
        root = artifacts.local_path(examples.uri)
        log.info("Ingest: beam options %s", self._beam_pipeline_args)
        dataset_dir = stages.ingest(config, root, beam_options=self._beam_pipeline_args)
        stats = PreparedDataset.open(dataset_dir).stats
        # Records are tf.train.Example (uncompressed TFRecord) in <dataset_dir>/<split>/, not TFX's Split-*/.
        examples.splits = list(artifacts.SPLITS)
        examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        examples.set_string_custom_property(artifacts.DATASET_DIR, artifacts.relative_to(dataset_dir, root))
        examples.set_string_custom_property(artifacts.DATASET_HASH, config_hash(config.data))
        examples.set_int_custom_property("num_users", int(stats["num_users"]))
        examples.set_int_custom_property("num_items", int(stats["num_items"]))


class Ingest(base_beam_component.BaseBeamComponent):
    """The Beam ingestion job (beam_jobs/ingest.py): raw data -> prepared dataset (an Examples artefact)."""

    SPEC_CLASS = IngestSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(IngestExecutor)

    def __init__(self, config: str):
        super().__init__(spec=IngestSpec(config=config, examples=types.Channel(type=artifacts.Examples)))


class SemanticFeaturesSpec(ComponentSpec):
    PARAMETERS = {CONFIG: ExecutionParameter(type=str)}
    INPUTS = {EXAMPLES: ChannelParameter(type=artifacts.Examples)}
    OUTPUTS = {FEATURES: ChannelParameter(type=artifacts.SemanticFeatures)}


class SemanticFeaturesExecutor(_StageBeamExecutor):
    """stages.semantic_features of the prepared dataset into the SemanticFeatures artefact's URI."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        from tfrs_llmrec.workflow import stages

        config = decode_config(exec_properties[CONFIG])
        examples = artifacts.single(input_dict[EXAMPLES])
        features = artifacts.single(output_dict[FEATURES])
        root = artifacts.local_path(features.uri)
        features_dir = stages.semantic_features(config, artifacts.dataset_path(examples), output_dir=root,
                                                beam_options=self._beam_pipeline_args)
        features.set_string_custom_property(artifacts.FEATURES_DIR, artifacts.relative_to(features_dir, root))


class SemanticFeatures(base_beam_component.BaseBeamComponent):
    """The Beam features job (beam_jobs/features.py): language-model vectors, LLM texts, semantic IDs."""

    SPEC_CLASS = SemanticFeaturesSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(SemanticFeaturesExecutor)

    def __init__(self, examples: types.BaseChannel, config: str):
        super().__init__(spec=SemanticFeaturesSpec(
            config=config, examples=examples,
            semantic_features=types.Channel(type=artifacts.SemanticFeatures)))
