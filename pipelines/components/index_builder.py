"""IndexBuilder: stages.export of the trained model, and the index blessing.

The RetrievalIndex artefact is the export directory: retrieval/ (BruteForce SavedModel, core TF
ops only), retrieval_scann/ (when export.indexes has scann), item_tower/ and export.json, every
SavedModel already reloaded and checked in a fresh process by stages.export. The IndexBlessing
says whether ScaNN's recall@K against exact search reaches pipeline.min_scann_recall.

It does not wait for the model blessing: it depends only on the model, so a rerun whose
Evaluator re-ran (its baseline changed) reuses the cached export.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipelines import artifacts, gates
from pipelines.components.common import CONFIG, decode_config, log
from pipelines.components.data import EXAMPLES, FEATURES
from pipelines.components.evaluator import MODEL

INDEX = "index"
BLESSING = "blessing"
MIN_SCANN_RECALL = "min_scann_recall"


class IndexBuilderSpec(ComponentSpec):
    PARAMETERS = {CONFIG: ExecutionParameter(type=str), MIN_SCANN_RECALL: ExecutionParameter(type=float)}
    INPUTS = {EXAMPLES: ChannelParameter(type=artifacts.Examples),
              MODEL: ChannelParameter(type=artifacts.Model),
              FEATURES: ChannelParameter(type=artifacts.SemanticFeatures, optional=True)}
    OUTPUTS = {INDEX: ChannelParameter(type=artifacts.RetrievalIndex),
               BLESSING: ChannelParameter(type=artifacts.IndexBlessing)}


class IndexBuilderExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        from tfrs_llmrec.workflow import stages

        config = decode_config(exec_properties[CONFIG])
        examples = artifacts.single(input_dict[EXAMPLES])
        model = artifacts.single(input_dict[MODEL])
        features = artifacts.single(input_dict.get(FEATURES))
        index = artifacts.single(output_dict[INDEX])
        blessing = artifacts.single(output_dict[BLESSING])

        manifest = stages.export(config, artifacts.dataset_path(examples), artifacts.features_path(features),
                                 artifacts.model_path(model), artifacts.local_path(index.uri))
        k = int(manifest["k"])
        scann = manifest["models"].get("scann")
        scann_recall = None if scann is None else float(scann[f"recall@{k}_vs_exact"])
        verdict = gates.index_verdict(scann_recall, k, exec_properties[MIN_SCANN_RECALL])

        for artifact in (index, blessing):
            artifact.set_int_custom_property(artifacts.MODEL_ID, model.id)
            artifact.set_int_custom_property("k", k)
            if scann_recall is not None:
                artifact.set_float_custom_property(f"scann_recall@{k}_vs_exact", scann_recall)
        artifacts.write_verdict(blessing, verdict.blessed, verdict.reasons)
        log.info("IndexBuilder: %s: %s", "BLESSED" if verdict.blessed else "NOT BLESSED", "; ".join(verdict.reasons))


class IndexBuilder(base_component.BaseComponent):
    """Exports the servable SavedModels (BruteForce, ScaNN, item tower) and blesses the ScaNN index."""

    SPEC_CLASS = IndexBuilderSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(IndexBuilderExecutor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel, config: str, min_scann_recall: float,
                 semantic_features: Optional[types.BaseChannel] = None):
        super().__init__(spec=IndexBuilderSpec(
            config=config, min_scann_recall=float(min_scann_recall), examples=examples, model=model,
            semantic_features=semantic_features, index=types.Channel(type=artifacts.RetrievalIndex),
            blessing=types.Channel(type=artifacts.IndexBlessing)))
