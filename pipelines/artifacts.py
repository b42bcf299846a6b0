"""The pipeline's artefact types and the properties every component reads or writes.

Standard TFX types where one fits (Examples, Model, ModelBlessing, PushedModel), our own for
the rest. Directories inside an artefact are recorded relative to its URI, so an artefact can
be copied or mounted elsewhere.

    Examples          Ingest's prepared dataset: <uri>/<dataset_dir>/{train,valid,test,items,users,vocab}/
    SemanticFeatures  the features job's output: <uri>/<features_dir>/
    Model             the Trainer's output: <uri>/Format-Serving/{checkpoints/, train_result.json, config.yaml}
    RetrievalMetrics  the Evaluator's metrics.json (the model and its baselines) and blessing.json
    ModelBlessing     the Evaluator's verdict (custom properties blessed, current_model_id, ...; BLESSED file)
    RetrievalIndex    IndexBuilder's export: retrieval/ (BruteForce), retrieval_scann/, item_tower/, export.json
    IndexBlessing     IndexBuilder's verdict on the ScaNN index's recall against exact search
    PushedModel       the Pusher's record: pushed, pushed_version, pushed_destination (push.json)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

from tfx.types import standard_artifacts
from tfx.types.artifact import Artifact

# The Evaluator's and the resolver's property names, as TFX's own Evaluator writes them, so
# LatestBlessedModelStrategy (locally and compiled for Kubeflow) finds our blessings.
BLESSED = "blessed"
CURRENT_MODEL = "current_model"
CURRENT_MODEL_ID = "current_model_id"
BASELINE_MODEL = "baseline_model"
BASELINE_MODEL_ID = "baseline_model_id"
BLESSED_FILE = "BLESSED"
NOT_BLESSED_FILE = "NOT_BLESSED"
# Ours.
DATASET_DIR = "dataset_dir"
DATASET_HASH = "dataset_hash"
FEATURES_DIR = "features_dir"
METRIC_NAME = "metric_name"
METRIC_VALUE = "metric_value"
EVAL_SPLIT = "eval_split"
REASONS = "reasons"
MODEL_ID = "model_id"
PUSHED = "pushed"
PUSHED_VERSION = "pushed_version"
PUSHED_DESTINATION = "pushed_destination"
SPLITS = ("train", "valid", "test")
# Beside a Model's checkpoints: the config it was trained with.
MODEL_CONFIG_FILE = "config.yaml"

Examples = standard_artifacts.Examples
Model = standard_artifacts.Model
ModelRun = standard_artifacts.ModelRun
ModelBlessing = standard_artifacts.ModelBlessing
PushedModel = standard_artifacts.PushedModel


class SemanticFeatures(Artifact):
    """Item (and user) language-model vectors, LLM texts and semantic IDs of one prepared dataset."""

    TYPE_NAME = "llmrec.SemanticFeatures"


class RetrievalMetrics(Artifact):
    """Full-ranking metrics of the trained model and its baselines (metrics.json) and the blessing decision."""

    TYPE_NAME = "llmrec.RetrievalMetrics"


class RetrievalIndex(Artifact):
    """The servable SavedModels of one trained model (stages.export's directory)."""

    TYPE_NAME = "llmrec.RetrievalIndex"


class IndexBlessing(Artifact):
    """Whether the approximate (ScaNN) index is close enough to exact search to serve."""

    TYPE_NAME = "llmrec.IndexBlessing"


def local_path(uri: str) -> Path:
    """A filesystem path for an artefact URI. Our stages use the filesystem, so on Vertex AI the
    pipeline root must be on Cloud Storage, which its containers see under /gcs/ (Cloud Storage FUSE)."""
    if uri.startswith("gs://"):
        return Path("/gcs") / uri[len("gs://"):]
    return Path(uri)


def single(artifacts: Optional[List[Artifact]]) -> Optional[Artifact]:
    """The one artefact of an input or output list; None for an absent optional input."""
    if not artifacts:
        return None
    if len(artifacts) != 1:
        raise ValueError(f"expected one artefact, got {len(artifacts)}: {[a.uri for a in artifacts]}")
    return artifacts[0]


def dataset_path(examples: Artifact) -> Path:
    """The prepared dataset directory inside an Ingest `Examples` artefact."""
    relative = examples.get_string_custom_property(DATASET_DIR)
    if not relative:
        raise ValueError(f"{examples.uri}: Examples artefact without {DATASET_DIR!r}; was it written by Ingest?")
    return local_path(examples.uri) / relative


def features_path(features: Optional[Artifact]) -> Optional[Path]:
    if features is None:
        return None
    return local_path(features.uri) / features.get_string_custom_property(FEATURES_DIR)


def model_path(model: Artifact) -> Path:
    """The directory the Trainer's run_fn trained into (TFX's serving model directory)."""
    from tfx.utils import path_utils

    return local_path(path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model)))


def is_blessed(blessing: Optional[Artifact]) -> bool:
    return blessing is not None and blessing.get_int_custom_property(BLESSED) == 1


def write_verdict(blessing: Artifact, blessed: bool, reasons: List[str]) -> None:
    """Records a verdict the TFX way: custom property `blessed` and a BLESSED or NOT_BLESSED file."""
    blessing.set_int_custom_property(BLESSED, 1 if blessed else 0)
    blessing.set_string_custom_property(REASONS, json.dumps(reasons))
    directory = local_path(blessing.uri)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / (BLESSED_FILE if blessed else NOT_BLESSED_FILE)).write_text(
        "\n".join(reasons) + "\n", encoding="utf-8")


def relative_to(path: Path, root: Path) -> str:
    return os.path.relpath(Path(path).resolve(), Path(root).resolve())
