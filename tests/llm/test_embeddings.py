"""OpenAIEmbeddingsEncoder against the loopback server."""

import numpy as np
import pytest

from tests.llm.fake_openai import embeddings_reply, endpoint_for, error_reply, fake_vector
from tfrs_llmrec.llm import LLMConfigError, LLMRequestError, OpenAIEmbeddingsEncoder
from tfrs_llmrec.llm.embeddings import DIMENSION_PROBE


def expected(texts):
    vectors = np.array([fake_vector(t) for t in texts], dtype=np.float64)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def embed_all(record):
    return embeddings_reply(record.body["input"])


def test_vectors_are_normalised_and_in_input_order_across_concurrent_batches(serve):
    server = serve(lambda r: embeddings_reply(r.body["input"], delay=0.05))
    encoder = OpenAIEmbeddingsEncoder(endpoint_for(server, batch_size=3, max_concurrency=2))
    texts = [f"text number {k}" for k in range(10)]
    vectors = encoder.encode(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (10, 8)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(vectors, expected(texts), atol=1e-6)
    assert server.count() == 4 and server.max_in_flight == 2
    assert sorted(len(r.body["input"]) for r in server.requests) == [1, 3, 3, 3]
    assert all(r.path == "/v1/embeddings" and r.body["model"] == "test-model" for r in server.requests)
    assert encoder.dimension == 8 and server.count() == 4  # learned from the responses, no probe
    assert encoder.usage.prompt_tokens == 20 and encoder.usage.requests == 4


def test_dimension_probes_once_and_empty_input_has_that_width(serve):
    server = serve(embed_all)
    encoder = OpenAIEmbeddingsEncoder(endpoint_for(server, base_url=server.base_url + "/"))
    assert encoder.identity == f"openai:test-model@127.0.0.1:{server.port}"
    assert encoder.dimension == 8 and server.requests[0].body["input"] == [DIMENSION_PROBE]
    assert encoder.encode([]).shape == (0, 8) and server.count() == 1
    assert encoder.encode(["", "a"]).shape == (2, 8)
    assert server.requests[-1].body["input"] == [" ", "a"]


def test_transient_errors_are_retried_and_a_lasting_failure_raises(serve):
    calls = {"n": 0}

    def flaky(record):
        calls["n"] += 1
        if "doomed" in record.body["input"]:
            return error_reply(500, "still down")
        return error_reply(502, "bad gateway") if calls["n"] == 1 else embeddings_reply(record.body["input"])

    server = serve(flaky)
    encoder = OpenAIEmbeddingsEncoder(endpoint_for(server, max_retries=2, batch_size=2))
    assert encoder.encode(["a", "b"]).shape == (2, 8) and server.count() == 2
    with pytest.raises(LLMRequestError, match=r"texts 0\.\.0 .* gave up after 3 attempts.*HTTP 500"):
        encoder.encode(["doomed"])
    assert server.count() == 5


def test_malformed_embeddings_are_retried_then_rejected(serve):
    server = serve(lambda r: embeddings_reply(r.body["input"][:-1]))  # one vector short
    encoder = OpenAIEmbeddingsEncoder(endpoint_for(server, max_retries=1))
    with pytest.raises(LLMRequestError, match="expected 2 embeddings, got 1"):
        encoder.encode(["a", "b"])
    assert server.count() == 2


def test_the_model_is_required():
    from tfrs_llmrec.config.schema import HttpEndpointConfig

    with pytest.raises(LLMConfigError, match="endpoint.model"):
        OpenAIEmbeddingsEncoder(HttpEndpointConfig(model=""))
