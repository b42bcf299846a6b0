"""YAML experiment configs parsed into typed, validated dataclasses."""

from tfrs_llmrec.config.loader import (
    ConfigError,
    config_hash,
    dump_yaml,
    from_dict,
    load_config,
    to_dict,
)
from tfrs_llmrec.config.schema import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    ExportConfig,
    ModelConfig,
    TowerConfig,
    TrainConfig,
)


def load_experiment(path, overrides=()) -> ExperimentConfig:
    return load_config(path, ExperimentConfig, overrides)


__all__ = [
    "ConfigError", "DataConfig", "EvalConfig", "ExperimentConfig", "ExportConfig", "ModelConfig",
    "TowerConfig", "TrainConfig", "config_hash", "dump_yaml", "from_dict", "load_config",
    "load_experiment", "to_dict",
]
