"""The chat client against a real loopback HTTP server: retries, backoff, fail-fast, concurrency, usage."""

import logging
import random
import socket
import time

import pytest

from tests.llm.fake_openai import Reply, ScriptedChat, chat_reply, endpoint_for, error_reply
from tfrs_llmrec.config.schema import HttpEndpointConfig
from tfrs_llmrec.llm import ChatClient, ChatRequest, LLMConfigError, RetryPolicy, string_list_validator
from tfrs_llmrec.llm.client import MAX_RETRY_AFTER_S, parse_retry_after

VALID = '["saves time", "a gift for a friend", "loves the series"]'


def messages(text):
    return [{"role": "user", "content": text}]


class RecordingSleep:
    def __init__(self):
        self.waits = []

    def __call__(self, seconds):
        self.waits.append(seconds)
        time.sleep(seconds)


def test_a_valid_answer_is_validated_and_its_usage_counted(serve):
    server = serve(ScriptedChat({}, default=lambda r: chat_reply(VALID, prompt_tokens=11, completion_tokens=7)))
    client = ChatClient.from_endpoint(endpoint_for(server), temperature=0.3, max_tokens=99)
    result = client.complete(messages("hello"), string_list_validator(max_items=5), key="k1")
    assert result.ok and result.value == ["saves time", "a gift for a friend", "loves the series"]
    assert (result.attempts, result.prompt_tokens, result.completion_tokens) == (1, 11, 7)
    sent = server.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.body == {"model": "test-model", "messages": messages("hello"), "temperature": 0.3, "max_tokens": 99}
    assert "Authorization" not in sent.headers  # no api_key_env configured


def test_timeout_429_500_and_malformed_output_are_retried_until_a_valid_answer(serve, caplog):
    script = ScriptedChat({"item": [
        chat_reply(VALID, delay=0.6),                                   # sleeps past the 0.2 s timeout
        error_reply(429, "slow down", headers={"Retry-After": "0.25"}),
        error_reply(500, "boom"),
        chat_reply("Here are reasons: saves time, gift", prompt_tokens=9, completion_tokens=4),  # not JSON
        chat_reply(VALID, prompt_tokens=9, completion_tokens=6),
    ]})
    server = serve(script)
    sleep = RecordingSleep()
    client = ChatClient.from_endpoint(endpoint_for(server, timeout_s=0.2, max_retries=4, backoff_s=0.01),
                                      sleep=sleep, rng=random.Random(0))
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG, logger="tfrs_llmrec.llm"):
        result = client.complete(messages("the item"), string_list_validator())
    elapsed = time.monotonic() - started
    assert result.ok, result.error
    retried = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retried) == 4
    assert "timed out after 0.2s" in retried[0] and "HTTP 429" in retried[1] and "HTTP 500" in retried[2]
    assert "invalid output" in retried[3]
    assert result.attempts == 5 and server.count() == 5 and script.attempts["item"] == 5
    # The timed-out response never arrived; only the two answered completions cost tokens.
    assert (result.prompt_tokens, result.completion_tokens) == (18, 10)
    assert client.usage.prompt_tokens == 18 and client.usage.completion_tokens == 10
    # Backoff: 0.01 * 2**(k-1) plus at most 25% jitter, except the 429's Retry-After.
    assert len(sleep.waits) == 4
    assert sleep.waits[1] == pytest.approx(0.25)
    for k in (1, 3, 4):
        base = 0.01 * 2 ** (k - 1)
        assert base <= sleep.waits[k - 1] <= 1.25 * base
    assert 0.2 + 0.25 <= elapsed < 3.0


def test_failure_is_recorded_after_max_retries_without_stopping_the_batch(serve):
    script = ScriptedChat({"bad": [error_reply(503, "overloaded")]})
    server = serve(script)
    client = ChatClient.from_endpoint(endpoint_for(server, max_retries=2))
    requests = [ChatRequest(f"k{i}", messages(f"{'bad' if i == 1 else 'good'} {i}")) for i in range(4)]
    results = client.complete_many(requests, string_list_validator())
    assert [r.key for r in results] == ["k0", "k1", "k2", "k3"]
    assert [r.ok for r in results] == [True, False, True, True]
    failed = results[1]
    assert failed.attempts == 3 and script.attempts["bad"] == 3
    assert "gave up after 3 attempts" in failed.error and "HTTP 503" in failed.error and "overloaded" in failed.error
    assert client.usage.failures == 1 and client.usage.requests == 4


def test_output_that_never_validates_becomes_a_failure(serve):
    script = ScriptedChat({"x": [chat_reply("[1, 2, 3]")]})
    server = serve(script)
    client = ChatClient.from_endpoint(endpoint_for(server, max_retries=1))
    result = client.complete(messages("x"), string_list_validator())
    assert not result.ok and result.attempts == 2 and server.count() == 2
    assert "invalid output" in result.error and result.raw == "[1, 2, 3]"


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_client_errors_other_than_429_fail_fast(serve, status):
    server = serve(ScriptedChat({}, default=lambda r: error_reply(status, "nope")))
    sleep = RecordingSleep()
    client = ChatClient.from_endpoint(endpoint_for(server, max_retries=4), sleep=sleep)
    result = client.complete(messages("x"))
    assert not result.ok and result.attempts == 1 and server.count() == 1 and sleep.waits == []
    assert result.error.startswith(f"HTTP {status}")


def test_a_response_body_that_is_not_json_is_retried(serve):
    script = ScriptedChat({"x": [Reply(status=200, body=b"<html>gateway</html>"), chat_reply(VALID)]})
    serve_ = serve(script)
    client = ChatClient.from_endpoint(endpoint_for(serve_))
    result = client.complete(messages("x"), string_list_validator())
    assert result.ok and result.attempts == 2


def test_connection_errors_are_retried_then_reported():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = HttpEndpointConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=2, backoff_s=0.001)
    result = ChatClient.from_endpoint(endpoint).complete(messages("x"))
    assert not result.ok and result.attempts == 3 and "connection error" in result.error


def test_concurrency_limit_is_respected_and_results_keep_request_order(serve):
    server = serve(ScriptedChat({}, default=lambda r: chat_reply(f'["{r.user_text}"]', delay=0.15)))
    client = ChatClient.from_endpoint(endpoint_for(server, max_concurrency=3, batch_size=5))
    requests = [ChatRequest(str(i), messages(f"prompt {i}")) for i in range(12)]
    seen = []
    results = client.complete_many(requests, string_list_validator(), on_result=lambda req, res: seen.append(req.key))
    assert server.max_in_flight == 3
    assert [r.value for r in results] == [[f"prompt {i}"] for i in range(12)]
    assert sorted(seen, key=int) == [str(i) for i in range(12)]


def test_usage_is_logged_per_batch_and_totalled(serve, caplog):
    server = serve(ScriptedChat({}, default=lambda r: chat_reply(VALID, prompt_tokens=20, completion_tokens=3)))
    client = ChatClient.from_endpoint(endpoint_for(server, max_concurrency=2, batch_size=4))
    with caplog.at_level(logging.INFO, logger="tfrs_llmrec.llm"):
        client.complete_many([ChatRequest(str(i), messages(str(i))) for i in range(10)], string_list_validator())
    batches = [r.getMessage() for r in caplog.records if r.getMessage().startswith("LLM batch")]
    assert len(batches) == 3 and batches[0].startswith("LLM batch 1/3: 4 requests")
    assert batches[2].startswith("LLM batch 3/3: 2 requests")
    assert (client.usage.prompt_tokens, client.usage.completion_tokens, client.usage.total_tokens) == (200, 30, 230)
    assert any("LLM totals: 10 requests" in r.getMessage() for r in caplog.records)


def test_backoff_is_exponential_capped_and_jittered():
    policy = RetryPolicy(max_retries=10, backoff_s=1.0, rng=random.Random(1))
    waits = [policy.delay(k) for k in range(1, 11)]
    for k, wait in enumerate(waits, start=1):
        base = min(2.0 ** (k - 1), 30.0)
        assert base <= wait <= 1.25 * base
    assert max(waits) <= policy.max_delay() == pytest.approx(37.5)
    assert policy.delay(3, retry_after=7.0) == 7.0
    assert policy.delay(1, retry_after=10_000.0) == MAX_RETRY_AFTER_S


def test_retry_after_accepts_seconds_and_http_dates():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 50 <= parse_retry_after(future) <= 61
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_a_missing_key_variable_is_a_config_error_naming_the_variable(monkeypatch):
    monkeypatch.delenv("LLMREC_ABSENT_KEY", raising=False)
    endpoint = HttpEndpointConfig(model="m", api_key_env="LLMREC_ABSENT_KEY")
    with pytest.raises(LLMConfigError, match="LLMREC_ABSENT_KEY"):
        ChatClient.from_endpoint(endpoint)


def test_redirects_are_not_followed(serve):
    server = serve(ScriptedChat({}, default=lambda r: Reply(status=307, headers={"Location": "http://example.invalid/"})))
    result = ChatClient.from_endpoint(endpoint_for(server)).complete(messages("x"))
    assert not result.ok and result.attempts == 1 and "redirects are not followed" in result.error
