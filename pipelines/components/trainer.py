"""The Trainer: TFX's Trainer (its spec, GenericExecutor, run_fn and FnArgs) with one more input.

TFX's Trainer hands `run_fn` only the Examples' split file patterns; our stages read a prepared
dataset directory and, for the semantic models, a features directory. So this Trainer is TFX's
`TrainerSpec` plus an optional `semantic_features` input, and its executor is TFX's
`GenericExecutor`, which adds both directories to `fn_args.custom_config` before it calls
`run_fn` (pipelines.trainer.run_fn). Everything else is TFX's: the Model and ModelRun outputs,
`fn_args.serving_model_dir`, the check that run_fn wrote it, `custom_config` as the resolved
experiment config.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from tfx import types
from tfx.components.trainer import component as tfx_trainer
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import trainer_pb2
from tfx.types import standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import json_utils

from pipelines import artifacts
from pipelines.components.data import FEATURES

RUN_FN = "pipelines.trainer.run_fn.run_fn"
# Keys of fn_args.custom_config.
CONFIG_KEY = "config"
DATASET_DIR_KEY = "dataset_dir"
FEATURES_DIR_KEY = "features_dir"


class TrainerSpec(standard_component_specs.TrainerSpec):
    INPUTS = {**standard_component_specs.TrainerSpec.INPUTS,
              FEATURES: ChannelParameter(type=artifacts.SemanticFeatures, optional=True)}


class TrainerExecutor(trainer_executor.GenericExecutor):
    """TFX's GenericExecutor; run_fn also gets the prepared dataset and features directories."""

    def _GetFnArgs(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
                   exec_properties: Dict[str, Any]):
        fn_args = super()._GetFnArgs(input_dict, output_dict, exec_properties)
        examples = artifacts.single(input_dict[standard_component_specs.EXAMPLES_KEY])
        features = artifacts.features_path(artifacts.single(input_dict.get(FEATURES)))
        fn_args.custom_config = {**(fn_args.custom_config or {}),
                                 DATASET_DIR_KEY: str(artifacts.dataset_path(examples)),
                                 FEATURES_DIR_KEY: str(features) if features is not None else None}
        return fn_args


class Trainer(tfx_trainer.Trainer):
    """TFX's Trainer running `pipelines.trainer.run_fn.run_fn` (stages.train under train.strategy)."""

    SPEC_CLASS = TrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(TrainerExecutor)

    def __init__(self, examples: types.BaseChannel, config: Dict[str, Any],
                 semantic_features: Optional[types.BaseChannel] = None):
        # TFX's Trainer.__init__ builds its own TrainerSpec; this builds ours with the same fields.
        # run_fn is a module path: nothing to package, the image holds the module.
        spec = TrainerSpec(
            examples=examples, semantic_features=semantic_features,
            train_args=trainer_pb2.TrainArgs(splits=["train"]), eval_args=trainer_pb2.EvalArgs(splits=["valid"]),
            run_fn=RUN_FN, custom_config=json_utils.dumps({CONFIG_KEY: config}),
            model=types.Channel(type=artifacts.Model), model_run=types.Channel(type=artifacts.ModelRun))
        base_component.BaseComponent.__init__(self, spec=spec)
