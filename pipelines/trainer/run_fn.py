"""The TFX Trainer's `run_fn`: stages.train into the Trainer's serving model directory.

`fn_args.custom_config` holds the resolved experiment config (`config`, a dict) and, added by
pipelines.components.trainer.TrainerExecutor, the prepared dataset and features directories.
The model directory gets the checkpoints, train_result.json and config.yaml (this config).
Training honours `train.strategy` (tfrs_llmrec.distributed.make_distribution): single,
mirrored (the host's GPUs), multi_worker (TF_CONFIG) or horovod.
"""

from tfrs_llmrec._keras_env import use_legacy_keras

use_legacy_keras()

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from pipelines.artifacts import MODEL_CONFIG_FILE  # noqa: E402
from tfrs_llmrec.config import ExperimentConfig, from_dict  # noqa: E402


def run_fn(fn_args) -> None:
    from tfrs_llmrec.atomic_files import write_atomically, write_json_atomically
    from tfrs_llmrec.config import dump_yaml
    from tfrs_llmrec.workflow import stages

    custom = fn_args.custom_config
    config = from_dict(ExperimentConfig, custom["config"], source="Trainer custom_config")
    model_dir = Path(fn_args.serving_model_dir)
    summary = stages.train(config, custom["dataset_dir"], custom.get("features_dir"), model_dir)
    # The model's own config, so a later Evaluator can rebuild it as its baseline.
    text = dump_yaml(config)
    write_atomically(model_dir / MODEL_CONFIG_FILE, lambda handle: handle.write(text))
    # The ModelRun artefact keeps the training history beside the model (TensorBoard-like outputs).
    write_json_atomically(Path(fn_args.model_run_dir) / stages.TRAIN_RESULT_FILE, summary)
    print(f"Trainer: {config.model.name} trained into {model_dir}: "
          f"{json.dumps({key: summary.get(key) for key in ('epochs_completed', 'best_value', 'best_epoch')})}")
