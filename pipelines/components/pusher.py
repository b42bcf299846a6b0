"""The Pusher: publishes a blessed export to the TF Serving model base (pipelines.push).

Ours rather than TFX's Pusher, which pushes one Model artefact: ours pushes three SavedModels of
one RetrievalIndex under one version number, and only when both the model blessing and the index
blessing are positive and refer to the model being pushed. Its PushedModel artefact carries TFX's
Pusher properties (`pushed`, `pushed_version`, `pushed_destination`) and push.json.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipelines import artifacts, push
from pipelines.components.common import log
from pipelines.components.evaluator import MODEL
from pipelines.components.index_builder import INDEX

MODEL_BLESSING = "model_blessing"
INDEX_BLESSING = "index_blessing"
PUSHED_MODEL = "pushed_model"
SERVING_BASE = "serving_base"
MODEL_NAME = "model_name"
PUSH_FILE = "push.json"


class PusherSpec(ComponentSpec):
    PARAMETERS = {SERVING_BASE: ExecutionParameter(type=str), MODEL_NAME: ExecutionParameter(type=str)}
    INPUTS = {MODEL: ChannelParameter(type=artifacts.Model),
              INDEX: ChannelParameter(type=artifacts.RetrievalIndex),
              MODEL_BLESSING: ChannelParameter(type=artifacts.ModelBlessing),
              INDEX_BLESSING: ChannelParameter(type=artifacts.IndexBlessing)}
    OUTPUTS = {PUSHED_MODEL: ChannelParameter(type=artifacts.PushedModel)}


def refusals(model: types.Artifact, index: types.Artifact, model_blessing: types.Artifact,
             index_blessing: types.Artifact) -> List[str]:
    """Why this export must not be pushed (empty: push it)."""
    reasons = []
    for what, blessing in (("model", model_blessing), ("index", index_blessing)):
        if not artifacts.is_blessed(blessing):
            found = blessing.get_string_custom_property(artifacts.REASONS)
            reasons.append(f"{what} not blessed: " + "; ".join(json.loads(found) if found else ["no verdict"]))
    for what, artifact, key in (("model blessing", model_blessing, artifacts.CURRENT_MODEL_ID),
                                ("index", index, artifacts.MODEL_ID), ("index blessing", index_blessing,
                                                                       artifacts.MODEL_ID)):
        if artifact.get_int_custom_property(key) != model.id:
            reasons.append(f"the {what} is of model artefact {artifact.get_int_custom_property(key)}, "
                           f"not of model {model.id}")
    return reasons


class PusherExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        from tfrs_llmrec.atomic_files import write_json_atomically

        model = artifacts.single(input_dict[MODEL])
        index = artifacts.single(input_dict[INDEX])
        model_blessing = artifacts.single(input_dict[MODEL_BLESSING])
        index_blessing = artifacts.single(input_dict[INDEX_BLESSING])
        pushed_model = artifacts.single(output_dict[PUSHED_MODEL])
        serving_base = artifacts.local_path(exec_properties[SERVING_BASE])
        model_name = exec_properties[MODEL_NAME]

        record: Dict[str, Any] = {"model_id": model.id, "index_uri": index.uri, "serving_base": str(serving_base),
                                  "model_name": model_name}
        reasons = refusals(model, index, model_blessing, index_blessing)
        if reasons:
            record.update(pushed=False, reasons=reasons)
            pushed_model.set_int_custom_property(artifacts.PUSHED, 0)
            pushed_model.set_string_custom_property(artifacts.REASONS, json.dumps(reasons))
            log.info("Pusher: nothing pushed: %s", "; ".join(reasons))
            print("Pusher: nothing pushed: " + "; ".join(reasons))
        else:
            result = push.push(artifacts.local_path(index.uri), serving_base, model_name)
            record.update(pushed=result.pushed, version=result.version, destinations=result.destinations,
                          reasons=[result.reason] if result.reason else [])
            pushed_model.set_int_custom_property(artifacts.PUSHED, 1 if result.pushed else 0)
            pushed_model.set_string_custom_property(artifacts.PUSHED_VERSION, str(result.version))
            pushed_model.set_string_custom_property(artifacts.PUSHED_DESTINATION,
                                                    result.destinations[push.MAIN])
            for source, destination in result.destinations.items():
                pushed_model.set_string_custom_property(f"destination_{source}", destination)
            if result.reason:
                pushed_model.set_string_custom_property(artifacts.REASONS, json.dumps([result.reason]))
            message = (f"pushed version {result.version} to {result.destinations[push.MAIN]}" if result.pushed
                       else f"nothing new pushed: {result.reason}")
            log.info("Pusher: %s", message)
            print(f"Pusher: {message}")
        write_json_atomically(artifacts.local_path(pushed_model.uri) / PUSH_FILE, record)


class Pusher(base_component.BaseComponent):
    """Pushes the export of a blessed model with a blessed index as the next serving version."""

    SPEC_CLASS = PusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(PusherExecutor)

    def __init__(self, model: types.BaseChannel, index: types.BaseChannel, model_blessing: types.BaseChannel,
                 index_blessing: types.BaseChannel, serving_base: str, model_name: str):
        super().__init__(spec=PusherSpec(
            serving_base=serving_base, model_name=model_name, model=model, index=index,
            model_blessing=model_blessing, index_blessing=index_blessing,
            pushed_model=types.Channel(type=artifacts.PushedModel)))
