"""What every executor shares: the experiment config as an execution property."""

from __future__ import annotations

import json
import logging

from tfrs_llmrec.config import ExperimentConfig, from_dict, to_dict

CONFIG = "config"
log = logging.getLogger("pipelines")


def encode_config(config: ExperimentConfig) -> str:
    """The resolved config as canonical JSON: an execution property, so it is part of the cache key."""
    return json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"))


def decode_config(text: str) -> ExperimentConfig:
    return from_dict(ExperimentConfig, json.loads(text), source="execution property 'config'")
