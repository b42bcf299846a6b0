"""Builds the TextEncoder an `EncoderConfig` (features.encoder in experiment configs) names."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tfrs_llmrec.config.loader import ConfigError
from tfrs_llmrec.config.schema import EncoderConfig
from tfrs_llmrec.encoders.base import TextEncoder

KINDS = ("minilm", "saved_model", "openai_embeddings")
KEY_PREFIX = "features.encoder"
SOURCE = "encoder config"


def _fail(key: str, message: str, key_prefix: str) -> ConfigError:
    return ConfigError(SOURCE, f"{key_prefix}.{key}" if key_prefix else key, message)


def check_encoder_config(config: EncoderConfig, key_prefix: str = KEY_PREFIX) -> None:
    """Raises ConfigError naming the offending key (the loader does this for YAML; this covers
    configs built in code)."""
    if not isinstance(config, EncoderConfig):
        raise TypeError(f"expected EncoderConfig, got {type(config).__name__}")
    if config.kind not in KINDS:
        raise _fail("kind", f"expected one of {', '.join(KINDS)}, got {config.kind!r}", key_prefix)
    for field in dataclasses.fields(config):
        low, high = field.metadata.get("min"), field.metadata.get("max")
        if low is None and high is None:
            continue
        value = getattr(config, field.name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(field.name, f"expected int, got {value!r}", key_prefix)
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
            raise _fail(field.name, f"{value!r} is out of range {bounds}", key_prefix)
    problem = config.validate()
    if problem is not None:
        key, message = problem
        raise _fail(key, message, key_prefix)
    if config.kind == "saved_model" and not (Path(config.saved_model_path).expanduser() / "saved_model.pb").is_file():
        raise _fail("saved_model_path", f"{config.saved_model_path!r} is not a SavedModel directory "
                    "(no saved_model.pb)", key_prefix)


def build_encoder(config: EncoderConfig, key_prefix: str = KEY_PREFIX) -> TextEncoder:
    """The encoder for `config.kind`; errors are ConfigErrors naming `<key_prefix>.<key>`."""
    check_encoder_config(config, key_prefix)
    if config.kind == "minilm":
        from tfrs_llmrec.encoders.minilm import MiniLMEncoder

        return MiniLMEncoder(max_length=config.max_length, batch_size=config.batch_size)
    if config.kind == "saved_model":
        from tfrs_llmrec.encoders.saved_model import SavedModelEncoder, SavedModelEncoderError

        try:
            return SavedModelEncoder(config.saved_model_path, batch_size=config.batch_size)
        except SavedModelEncoderError as exc:
            raise _fail("saved_model_path", str(exc), key_prefix) from exc
    from tfrs_llmrec.llm.client import LLMConfigError
    from tfrs_llmrec.llm.embeddings import OpenAIEmbeddingsEncoder

    try:
        return OpenAIEmbeddingsEncoder(config.endpoint)
    except LLMConfigError as exc:
        raise _fail("endpoint", str(exc), key_prefix) from exc
