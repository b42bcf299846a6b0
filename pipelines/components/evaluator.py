"""The Evaluator: stages.evaluate of the trained model and Pop, and the model blessing.

Ours rather than TFMA's: the metrics are full-ranking retrieval metrics over the whole catalogue
(tfrs_llmrec.evaluation). Like TFMA it evaluates the baseline, the last blessed model (from the
pipeline's LatestBlessedModelStrategy resolver), on the same data as the candidate, rebuilt from
the config.yaml its Trainer wrote; a baseline trained on another prepared dataset (or other
semantic features) is reported and not compared. The blessing is a standard ModelBlessing with
TFX's properties (`blessed`, `current_model_id`, `baseline_model_id`, a BLESSED or NOT_BLESSED
file), so the resolver finds blessed models from it (pipelines.gates.model_verdict decides).

Only the baseline Model, not its blessing, is an input: a rerun of the same config then finds
the same inputs from its third run on and is cached whole (the second re-evaluates, because the
last blessed model became its own).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipelines import artifacts, gates
from pipelines.components.common import CONFIG, decode_config, log
from pipelines.components.data import EXAMPLES, FEATURES
from tfrs_llmrec.config import ExperimentConfig

MODEL = "model"
BASELINE_MODEL = "baseline_model"
EVALUATION = "evaluation"
BLESSING = "blessing"
METRIC = "metric"
MIN_GAIN_OVER_POP = "min_gain_over_pop"
MAX_DROP_VS_BLESSED = "max_drop_vs_blessed"
METRICS_FILE = "metrics.json"
BLESSING_FILE = "blessing.json"
POP = "pop"


class EvaluatorSpec(ComponentSpec):
    PARAMETERS = {CONFIG: ExecutionParameter(type=str), METRIC: ExecutionParameter(type=str),
                  MIN_GAIN_OVER_POP: ExecutionParameter(type=float),
                  MAX_DROP_VS_BLESSED: ExecutionParameter(type=float)}
    INPUTS = {EXAMPLES: ChannelParameter(type=artifacts.Examples),
              MODEL: ChannelParameter(type=artifacts.Model),
              FEATURES: ChannelParameter(type=artifacts.SemanticFeatures, optional=True),
              BASELINE_MODEL: ChannelParameter(type=artifacts.Model, optional=True)}
    OUTPUTS = {EVALUATION: ChannelParameter(type=artifacts.RetrievalMetrics),
               BLESSING: ChannelParameter(type=artifacts.ModelBlessing)}


def evaluate_baseline(config: ExperimentConfig, model: types.Artifact, baseline_model: Optional[types.Artifact],
                      value: float, metric: str, dataset_dir: Path, features_dir: Optional[Path]) -> Optional[gates.Baseline]:
    """The last blessed model's gate metric on this run's data, or why it cannot be compared."""
    from tfrs_llmrec.config import ConfigError, config_hash, load_experiment
    from tfrs_llmrec.workflow import stages

    if baseline_model is None:
        return None
    if baseline_model.id == model.id:  # a rerun: the last blessed model is this one
        return gates.Baseline(value=value, model_id=model.id)
    baseline_dir = artifacts.model_path(baseline_model)
    try:
        trained = load_experiment(baseline_dir / artifacts.MODEL_CONFIG_FILE)
    except (ConfigError, OSError) as error:
        return gates.Baseline(float("nan"), baseline_model.id, comparable=False, why_not=f"no usable config: {error}")
    if config_hash(trained.data) != config_hash(config.data):
        return gates.Baseline(float("nan"), baseline_model.id, comparable=False,
                              why_not="it was trained on another prepared dataset (data config)")
    if stages.needs_features(trained) and config_hash(trained.features) != config_hash(config.features):
        return gates.Baseline(float("nan"), baseline_model.id, comparable=False,
                              why_not="it reads other semantic features (features config)")
    # The baseline's model and training sections with this run's evaluation settings.
    trained = dataclasses.replace(trained, eval=config.eval)
    payload = stages.evaluate(trained, dataset_dir, features_dir, baseline_dir, models=[trained.model.name])
    return gates.Baseline(value=float(payload["models"][trained.model.name]["summary"]["overall"][metric]),
                          model_id=baseline_model.id)


class EvaluatorExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        from tfrs_llmrec.atomic_files import write_json_atomically
        from tfrs_llmrec.workflow import stages

        config = decode_config(exec_properties[CONFIG])
        metric = exec_properties[METRIC]
        examples = artifacts.single(input_dict[EXAMPLES])
        model = artifacts.single(input_dict[MODEL])
        features = artifacts.single(input_dict.get(FEATURES))
        baseline_model = artifacts.single(input_dict.get(BASELINE_MODEL))
        evaluation = artifacts.single(output_dict[EVALUATION])
        blessing = artifacts.single(output_dict[BLESSING])

        name = config.model.name
        output = artifacts.local_path(evaluation.uri)
        dataset_dir, features_dir = artifacts.dataset_path(examples), artifacts.features_path(features)
        payload = stages.evaluate(config, dataset_dir, features_dir, artifacts.model_path(model), output / METRICS_FILE,
                                  models=list(dict.fromkeys([name, *config.eval.baselines, POP])))
        values = {}
        for evaluated, result in payload["models"].items():
            overall = result["summary"]["overall"]
            if metric not in overall:
                raise ValueError(f"pipeline.metric {metric!r} was not computed (eval.ks {config.eval.ks}); "
                                 f"the metrics have {sorted(overall)}")
            values[evaluated] = float(overall[metric])
            evaluation.set_float_custom_property(f"{evaluated}_{metric}", values[evaluated])

        dataset_hash = examples.get_string_custom_property(artifacts.DATASET_HASH)
        baseline = evaluate_baseline(config, model, baseline_model, values[name], metric, dataset_dir, features_dir)
        if baseline is not None and baseline.comparable:
            evaluation.set_float_custom_property(f"baseline_{metric}", baseline.value)
        verdict = gates.model_verdict(metric, values[name], values[POP], exec_properties[MIN_GAIN_OVER_POP],
                                      baseline, exec_properties[MAX_DROP_VS_BLESSED])

        blessing.set_string_custom_property(artifacts.CURRENT_MODEL, model.uri)
        blessing.set_int_custom_property(artifacts.CURRENT_MODEL_ID, model.id)
        if baseline_model is not None:
            blessing.set_string_custom_property(artifacts.BASELINE_MODEL, baseline_model.uri)
            blessing.set_int_custom_property(artifacts.BASELINE_MODEL_ID, baseline_model.id)
        blessing.set_string_custom_property(artifacts.METRIC_NAME, metric)
        blessing.set_float_custom_property(artifacts.METRIC_VALUE, values[name])
        blessing.set_string_custom_property(artifacts.DATASET_HASH, dataset_hash)
        blessing.set_string_custom_property(artifacts.EVAL_SPLIT, config.eval.split)
        artifacts.write_verdict(blessing, verdict.blessed, verdict.reasons)
        write_json_atomically(output / BLESSING_FILE, {
            "blessed": verdict.blessed, "reasons": verdict.reasons, "metric": metric, "values": values,
            "model_id": model.id, "baseline": None if baseline is None else vars(baseline)})
        log.info("Evaluator: model %s %s: %s", model.id, "BLESSED" if verdict.blessed else "NOT BLESSED",
                 "; ".join(verdict.reasons))
        print(f"Evaluator: {'blessed' if verdict.blessed else 'not blessed'}: {json.dumps(verdict.reasons)}")


class Evaluator(base_component.BaseComponent):
    """Evaluates the trained model beside Pop and blesses it (see the module docstring)."""

    SPEC_CLASS = EvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(EvaluatorExecutor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel, config: str, metric: str,
                 min_gain_over_pop: float, max_drop_vs_blessed: float,
                 semantic_features: Optional[types.BaseChannel] = None,
                 baseline_model: Optional[types.BaseChannel] = None):
        super().__init__(spec=EvaluatorSpec(
            config=config, metric=metric, min_gain_over_pop=float(min_gain_over_pop),
            max_drop_vs_blessed=float(max_drop_vs_blessed), examples=examples, model=model,
            semantic_features=semantic_features, baseline_model=baseline_model,
            evaluation=types.Channel(type=artifacts.RetrievalMetrics),
            blessing=types.Channel(type=artifacts.ModelBlessing)))
