"""The API key reaches the server's Authorization header and nowhere else, even when echoed back."""

import logging
import traceback

import pytest

from tests.llm.fake_openai import Reply, ScriptedChat, chat_reply, endpoint_for, error_reply, llm_config_for
from tfrs_llmrec.llm import (
    ChatClient,
    LLMRequestError,
    OpenAIEmbeddingsEncoder,
    generate_item_motivations,
    generate_user_interests,
)

SECRET = "sk-test-7Qe9RecognisableSecret-41b7"
KEY_ENV = "LLMREC_TEST_API_KEY"


def echo_auth(status, record, template):
    """An error response whose message repeats the Authorization header it received."""
    return error_reply(status, template.format(record.headers.get("Authorization", "")))


def test_the_key_appears_only_in_the_authorization_header(serve, tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.setenv(KEY_ENV, SECRET)
    script = ScriptedChat({
        "Game 0": [Reply(status=200, body=f'{{"choices": "{SECRET}"')],          # broken JSON holding the key
        "Game 1": [chat_reply(f"my key is {SECRET}")],                             # the model echoes the key
        "Game 2": [error_reply(500, f"internal error for {SECRET}")],
        "Game 3": [error_reply(429, f"rate limit for key {SECRET}", headers={"Retry-After": "0"})],
        "Game 4": [chat_reply(f'["{SECRET}"]')],                                   # valid, but is the key
    }, default=lambda r: echo_auth(401, r, "invalid api key {}"))
    server = serve(lambda r: script(r) if "Game" in r.user_text else echo_auth(401, r, "bad key {}"))
    config = llm_config_for(server, api_key_env=KEY_ENV, max_retries=1)

    with caplog.at_level(logging.DEBUG):
        motivations = generate_item_motivations([(f"i{k}", f"Game {k}", "d") for k in range(6)], config,
                                                tmp_path, progress=True)
        interests = generate_user_interests({"u": ["Some Title"]}, config, tmp_path, progress=True)
        encoder = OpenAIEmbeddingsEncoder(endpoint_for(server, api_key_env=KEY_ENV, max_retries=0))
        with pytest.raises(LLMRequestError) as raised:
            encoder.encode(["x"])

    assert server.count() >= 10
    assert all(r.headers.get("Authorization") == f"Bearer {SECRET}" for r in server.requests)
    assert motivations["i5"] is None and interests["u"] is None  # 401 for the defaults
    assert motivations["i4"] == ["[REDACTED]"]

    exported = [caplog.text, capsys.readouterr().err, motivations.report.summary(), repr(motivations.report),
                repr(interests.report.as_dict()), str(raised.value), repr(raised.value),
                "".join(traceback.format_exception(raised.value)), repr(encoder),
                repr(ChatClient.from_endpoint(config.endpoint).backend)]
    exported += [record.getMessage() for record in caplog.records]
    for text in exported:
        assert SECRET not in text
    assert "[REDACTED]" in caplog.text and "[REDACTED]" in str(raised.value)
    assert raised.value.__context__ is None and raised.value.__cause__ is None

    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert files
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
