"""build_encoder: the encoder an EncoderConfig names, or a ConfigError naming the bad key."""

import dataclasses
import os
import subprocess
import sys

import pytest

from tfrs_llmrec.config.loader import ConfigError
from tfrs_llmrec.config.schema import EncoderConfig, HttpEndpointConfig
from tfrs_llmrec.encoders import build_encoder


def config(**changes):
    return dataclasses.replace(EncoderConfig(), **changes)


@pytest.mark.parametrize("changes, key, message", [
    ({"kind": "bert"}, "features.encoder.kind", "expected one of minilm, saved_model, openai_embeddings"),
    ({"batch_size": 0}, "features.encoder.batch_size", "out of range [1, inf]"),
    ({"max_length": 4}, "features.encoder.max_length", "out of range [8, 512]"),
    ({"max_length": 1024}, "features.encoder.max_length", "out of range [8, 512]"),
    ({"max_length": "long"}, "features.encoder.max_length", "expected int"),
    ({"kind": "saved_model"}, "features.encoder.saved_model_path", "required when kind is 'saved_model'"),
    ({"kind": "saved_model", "saved_model_path": "/nonexistent/model"}, "features.encoder.saved_model_path",
     "not a SavedModel directory"),
    ({"kind": "openai_embeddings"}, "features.encoder.endpoint", "endpoint.model is required"),
    ({"kind": "openai_embeddings", "endpoint": HttpEndpointConfig(model="m", base_url="ftp://host/v1")},
     "features.encoder.endpoint", "http(s) URL"),
])
def test_bad_configs_name_the_key(changes, key, message):
    with pytest.raises(ConfigError) as caught:
        build_encoder(config(**changes))
    assert caught.value.key_path == key
    assert message in str(caught.value)


def test_key_prefix_can_be_changed():
    with pytest.raises(ConfigError) as caught:
        build_encoder(config(kind="saved_model"), key_prefix="encoder")
    assert caught.value.key_path == "encoder.saved_model_path"


def test_not_an_encoder_config():
    with pytest.raises(TypeError, match="EncoderConfig"):
        build_encoder({"kind": "minilm"})


def test_saved_model_kind(tmp_path):
    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, texts):
            return {"embeddings": tf.ones([tf.shape(texts)[0], 3])}

    ints = tmp_path / "ints"

    class IntModel(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
        def serve(self, ids):
            return {"embeddings": tf.ones([tf.shape(ids)[0], 3])}

    model, int_model = Model(), IntModel()
    tf.saved_model.save(model, str(tmp_path / "ok"), signatures={"serving_default": model.serve})
    tf.saved_model.save(int_model, str(ints), signatures={"serving_default": int_model.serve})

    encoder = build_encoder(config(kind="saved_model", saved_model_path=str(tmp_path / "ok"), batch_size=7))
    assert type(encoder).__name__ == "SavedModelEncoder" and encoder.batch_size == 7
    assert encoder.encode(["a", "b"]).shape == (2, 3)
    with pytest.raises(ConfigError) as caught:
        build_encoder(config(kind="saved_model", saved_model_path=str(ints)))
    assert caught.value.key_path == "features.encoder.saved_model_path" and "expected string" in str(caught.value)


def test_minilm_kind_passes_length_and_batch_size():
    encoder = build_encoder(config(kind="minilm", max_length=32, batch_size=16))
    assert type(encoder).__name__ == "MiniLMEncoder"
    assert (encoder.max_length, encoder.batch_size, encoder.dimension) == (32, 16, 384)
    assert encoder.identity.endswith(":max_length=32")


def test_openai_kind_builds_the_http_encoder_without_calling_it():
    endpoint = HttpEndpointConfig(base_url="http://127.0.0.1:9/v1", model="embedder")
    encoder = build_encoder(config(kind="openai_embeddings", endpoint=endpoint))
    assert type(encoder).__name__ == "OpenAIEmbeddingsEncoder"
    assert encoder.identity == "openai:embedder@127.0.0.1:9"


def test_package_import_does_not_load_tensorflow():
    code = ("import sys, tfrs_llmrec.encoders as e; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow loaded'; "
            "assert callable(e.build_encoder) and e.TextEncoder; print('ok')")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr
