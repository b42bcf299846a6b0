"""The TFX pipeline of the experiment's stages.

    Ingest (Beam) -> [SemanticFeatures (Beam), only when the model or a baseline reads semantic vectors]
      -> Trainer (TFX Trainer, run_fn = pipelines.trainer.run_fn) -> Evaluator (+ Pop; model blessing
      against Pop and against the last blessed model, found by a LatestBlessedModelStrategy resolver)
      -> IndexBuilder (BruteForce + ScaNN SavedModels, item tower; index blessing on ScaNN's recall)
      -> Pusher (both blessings positive: the next version under the serving base)

Each component's execution properties hold the config sections its stage reads, so with
`enable_cache` a rerun executes only what a config change affects (a new learning rate
retrains; new pipeline gates only re-evaluate; a new export.top_k only re-exports).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from tfx import v1 as tfx

from pipelines import artifacts
from pipelines.components import Evaluator, IndexBuilder, Ingest, Pusher, SemanticFeatures, Trainer
from pipelines.components.common import encode_config
from tfrs_llmrec.config import ConfigError, ExperimentConfig, to_dict
from tfrs_llmrec.config.schema import ExportConfig, PipelineConfig

RESOLVER_ID = "latest_blessed_model_resolver"


@dataclass(frozen=True)
class PipelineLayout:
    """Where one pipeline keeps its artefacts, its ML Metadata and its pushed models."""

    name: str
    pipeline_root: str
    metadata_path: str
    serving_base: str
    model_name: str


def pipeline_name(config: ExperimentConfig) -> str:
    """The experiment's name as a pipeline name Kubeflow accepts (lowercase letters, digits, '-')."""
    name = re.sub(r"[^a-z0-9-]+", "-", config.name.lower()).strip("-")
    if not name:
        raise ConfigError("<config>", "name", f"{config.name!r} gives no usable pipeline name")
    return name[:128]


def _is_url(path: str) -> bool:
    return "://" in path


def _under_output_dir(config: ExperimentConfig, path: str) -> str:
    """A config path: relative ones are under output_dir; absolute ones and URLs as given."""
    if _is_url(path) or os.path.isabs(path):
        return path
    return str(Path(config.output_dir) / path)


def _absolute(path: str) -> str:
    return path if _is_url(path) else str(Path(path).resolve())


def layout(config: ExperimentConfig, pipeline_root=None, metadata_path=None, serving_base=None,
           absolute: bool = True) -> PipelineLayout:
    """The pipeline's paths: arguments win over config.pipeline, which defaults under output_dir.
    `absolute` resolves local paths against the current directory (local runs); compiled pipelines
    keep them as written, since they are read inside the step containers."""
    name = pipeline_name(config)
    settings = config.pipeline
    default_dir = Path("pipelines") / name
    root = str(pipeline_root) if pipeline_root is not None else _under_output_dir(
        config, settings.pipeline_root or str(default_dir / "root"))
    metadata = str(metadata_path) if metadata_path is not None else _under_output_dir(
        config, settings.metadata_path or str(default_dir / "metadata.sqlite"))
    serving = str(serving_base) if serving_base is not None else _under_output_dir(config, settings.serving_base)
    if absolute:
        root, metadata, serving = _absolute(root), _absolute(metadata), _absolute(serving)
    return PipelineLayout(name, root, metadata, serving, settings.model_name or config.name)


def _check(config: ExperimentConfig) -> None:
    from tfrs_llmrec.models import is_ranker

    if is_ranker(config.model.name):
        raise ConfigError("<config>", "model.name", f"{config.model.name} is a CTR ranker; the pipeline trains, "
                          "indexes and pushes retrievers (run rankers with `llmrec run`)")
    k = int(config.pipeline.metric.partition("@")[2])
    if k not in config.eval.ks:
        raise ConfigError("<config>", "pipeline.metric",
                          f"{config.pipeline.metric} needs {k} in eval.ks (now {config.eval.ks})")
    if not config.export.enabled:
        raise ConfigError("<config>", "export.enabled", "the pipeline pushes the export: it must be true")


def stage_configs(config: ExperimentConfig, llm_cache_dir: Optional[str] = None) -> dict:
    """The config each component receives: the sections its stage reads (others at their defaults),
    so unrelated changes keep its cache. The pipeline section never reaches a stage."""
    base = dataclasses.replace(config, pipeline=PipelineConfig())
    features = config.features
    if features.llm.cache_dir is None and llm_cache_dir is not None:
        # The features job would default to a cache beside the dataset: inside Ingest's artefact.
        features = dataclasses.replace(features, llm=dataclasses.replace(features.llm, cache_dir=llm_cache_dir))
    return {
        "ingest": ExperimentConfig(name=config.name, seed=config.seed, output_dir=config.output_dir,
                                   data=config.data),
        "features": ExperimentConfig(name=config.name, seed=config.seed, output_dir=config.output_dir,
                                     data=config.data, features=features),
        "train": dataclasses.replace(base, export=ExportConfig()),
        "evaluate": dataclasses.replace(base, export=ExportConfig()),
        "export": base,
    }


def create_pipeline(config: ExperimentConfig, pipeline_root=None, metadata_path=None,
                    beam_pipeline_args: Sequence[str] = (), serving_base=None, enable_cache: bool = True,
                    for_kubeflow: bool = False) -> tfx.dsl.Pipeline:
    """The pipeline for `config` (see the module docstring). Paths default to config.pipeline's;
    `beam_pipeline_args` choose the Beam runner of Ingest and SemanticFeatures."""
    from tfrs_llmrec.workflow import stages

    _check(config)
    paths = layout(config, pipeline_root, metadata_path, serving_base, absolute=not for_kubeflow)
    llm_cache = _under_output_dir(config, "llm_cache")
    configs = stage_configs(config, llm_cache if for_kubeflow else _absolute(llm_cache))
    settings = config.pipeline

    ingest = Ingest(config=encode_config(configs["ingest"]))
    examples = ingest.outputs["examples"]
    components = [ingest]
    features = None
    if stages.needs_features(config):
        features_component = SemanticFeatures(examples=examples, config=encode_config(configs["features"]))
        features = features_component.outputs["semantic_features"]
        components.append(features_component)
    trainer = Trainer(examples=examples, config=to_dict(configs["train"]), semantic_features=features)
    latest_blessed = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=artifacts.ModelBlessing)).with_id(RESOLVER_ID)
    evaluator = Evaluator(
        examples=examples, model=trainer.outputs["model"], config=encode_config(configs["evaluate"]),
        metric=settings.metric, min_gain_over_pop=settings.min_recall_gain_over_pop,
        max_drop_vs_blessed=settings.max_recall_drop_vs_blessed, semantic_features=features,
        baseline_model=latest_blessed.outputs["model"])
    index_builder = IndexBuilder(examples=examples, model=trainer.outputs["model"],
                                 config=encode_config(configs["export"]), min_scann_recall=settings.min_scann_recall,
                                 semantic_features=features)
    pusher = Pusher(model=trainer.outputs["model"], index=index_builder.outputs["index"],
                    model_blessing=evaluator.outputs["blessing"], index_blessing=index_builder.outputs["blessing"],
                    serving_base=paths.serving_base, model_name=paths.model_name)
    components += [trainer, latest_blessed, evaluator, index_builder, pusher]

    metadata = None
    if not for_kubeflow:
        Path(paths.metadata_path).parent.mkdir(parents=True, exist_ok=True)
        metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(paths.metadata_path)
    return tfx.dsl.Pipeline(pipeline_name=paths.name, pipeline_root=paths.pipeline_root, components=components,
                            enable_cache=enable_cache, metadata_connection_config=metadata,
                            beam_pipeline_args=list(beam_pipeline_args))
