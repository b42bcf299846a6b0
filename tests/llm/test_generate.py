"""Generation jobs: cache hits, failures retried on rerun, resume after SIGKILL, backends."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import types

import pytest

from tests.llm.fake_openai import Reply, ScriptedChat, chat_reply, error_reply, llm_config_for
from tfrs_llmrec.config.schema import LLMConfig
from tfrs_llmrec.llm import (
    CacheRecordInfo,
    ChatClient,
    LLMConfigError,
    ResponseCache,
    cache_key,
    generate_item_motivations,
    generate_user_interests,
)
from tfrs_llmrec.llm.cache import CACHE_FILE

REASONS = '["relaxes after work", "a gift for a nephew", "collects the series"]'


def items(n, prefix="Game"):
    return [(f"i{k}", f"{prefix} {k}", f"Description of {prefix.lower()} {k}") for k in range(n)]


def test_second_run_is_served_from_the_cache(serve, tmp_path):
    server = serve(ScriptedChat({}, default=lambda r: chat_reply(REASONS, prompt_tokens=30, completion_tokens=12)))
    config = llm_config_for(server)
    first = generate_item_motivations(items(6), config, tmp_path, progress=False)
    assert first == {f"i{k}": ["relaxes after work", "a gift for a nephew", "collects the series"] for k in range(6)}
    assert server.count() == 6
    report = first.report
    assert (report.requests, report.cache_hits, report.generated, report.failures) == (6, 0, 6, 0)
    assert (report.prompt_tokens, report.completion_tokens, report.total_tokens) == (180, 72, 252)

    second = generate_item_motivations(items(6), config, tmp_path, progress=False)
    assert second == first and server.count() == 6  # the server saw nothing new
    assert (second.report.cache_hits, second.report.requests, second.report.prompt_tokens) == (6, 0, 0)

    # One new item: only its prompt is sent.
    third = generate_item_motivations(items(7), config, tmp_path, progress=False)
    assert server.count() == 7 and third.report.requests == 1 and third.report.cache_hits == 6
    assert "Game 6" in server.requests[-1].user_text


def test_failures_are_recorded_with_a_reason_and_retried_on_the_next_run(serve, tmp_path):
    state = {"broken": True}
    script = ScriptedChat({"Game 2": [error_reply(500, "down")]}, default=lambda r: chat_reply(REASONS))
    server = serve(lambda record: script(record) if state["broken"] or "Game 2" not in record.user_text
                   else chat_reply('["finally works"]'))
    config = llm_config_for(server, max_retries=1)
    first = generate_item_motivations(items(4), config, tmp_path, progress=False)
    assert first["i2"] is None and all(first[f"i{k}"] for k in (0, 1, 3))
    assert first.report.failures == 1 and script.attempts["Game 2"] == 2
    assert any("HTTP 500" in reason for reason in first.report.failure_reasons)
    with ResponseCache(tmp_path) as cache:
        failed = [e for e in cache.entries() if not e.ok]
        assert len(failed) == 1 and "gave up after 2 attempts" in failed[0].reason and failed[0].attempts == 2
        assert cache.counts() == {"ok": 3, "failed": 1}

    state["broken"] = False
    before = server.count()
    second = generate_item_motivations(items(4), config, tmp_path, progress=False)
    assert server.count() == before + 1 and "Game 2" in server.requests[-1].user_text
    assert second["i2"] == ["finally works"]
    assert (second.report.cache_hits, second.report.retried_failures, second.report.generated) == (3, 1, 1)
    with ResponseCache(tmp_path) as cache:
        assert cache.counts() == {"ok": 4, "failed": 0}


def test_identical_prompts_are_sent_once_and_textless_items_skipped(serve, tmp_path):
    server = serve(ScriptedChat({}, default=lambda r: chat_reply(REASONS)))
    batch = [("a", "Same Title", "same  text"), ("b", " Same Title ", "same text"), ("c", "", None),
             ("d", "Other", "")]
    result = generate_item_motivations(batch, llm_config_for(server), tmp_path, progress=False)
    assert server.count() == 2
    assert result["a"] == result["b"] and result["c"] is None and result["d"]
    assert (result.report.ids, result.report.prompts, result.report.skipped) == (4, 2, 1)
    assert "Description: (no description)" in [r for r in server.requests if "Other" in r.user_text][0].user_text
    with pytest.raises(ValueError, match="appears twice"):
        generate_item_motivations([("a", "x", ""), ("a", "y", "")], llm_config_for(server), tmp_path, progress=False)


def test_user_interests_use_numbered_recent_history_and_at_most_m_interests(serve, tmp_path):
    seven = json.dumps([f"interest {k}" for k in range(7)])
    server = serve(ScriptedChat({}, default=lambda r: chat_reply(f"```json\n{seven}\n```")))
    config = llm_config_for(server)
    config.max_interests = 3
    users = {"u1": ["Old Game", "Mid Game", "New Game"], "u2": [], "u3": ["", "  "]}
    result = generate_user_interests(users, config, tmp_path, progress=False, max_history_titles=2)
    assert result == {"u1": ["interest 0", "interest 1", "interest 2"], "u2": None, "u3": None}
    text = server.requests[0].user_text
    assert "1. Mid Game\n2. New Game" in text and "Old Game" not in text and "at most 3" in text
    assert result.report.skipped == 2 and server.count() == 1


def test_cache_key_covers_backend_model_prompt_version_inputs_and_params():
    base = dict(backend="openai", model="m", prompt_name="p", prompt_version=1, inputs={"title": "t"},
                params={"temperature": 0.0})
    key = cache_key(**base)
    assert len(key) == 64 and key == cache_key(**{**base, "inputs": {"title": "t"}})
    for change in ({"backend": "gguf"}, {"model": "m2"}, {"prompt_name": "q"}, {"prompt_version": 2},
                   {"inputs": {"title": "u"}}, {"params": {"temperature": 0.5}}):
        assert cache_key(**{**base, **change}) != key


def test_a_failure_never_replaces_a_stored_success(tmp_path):
    info = CacheRecordInfo("openai", "m", "p", 1, {"title": "t"}, {})
    with ResponseCache(tmp_path) as cache:
        cache.put_failure(info, "first try failed")
        cache.put_success(info, ["ok"], raw='["ok"]', attempts=2, prompt_tokens=5)
        cache.put_failure(info, "a late failure from another worker")
        entry = cache.get(info.key())
    assert entry.ok and entry.value == ["ok"] and entry.reason is None and entry.failures == 1
    assert entry.attempts == 3 and entry.prompt_tokens == 5


RUN_IN_CHILD = textwrap.dedent("""
    import sys
    from tfrs_llmrec.config.schema import HttpEndpointConfig, LLMConfig
    from tfrs_llmrec.llm import generate_item_motivations

    endpoint = HttpEndpointConfig(base_url=sys.argv[1], model="test-model", timeout_s=60, max_retries=0,
                                  max_concurrency=2, batch_size=4)
    items = [(f"i{k}", f"Game {k}", "d") for k in range(12)]
    generate_item_motivations(items, LLMConfig(backend="openai", endpoint=endpoint), sys.argv[2], progress=False)
    print("finished")
""")


def _cached_titles(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return {json.loads(row[0])["title"] for row in db.execute("SELECT inputs FROM responses WHERE status='ok'")}
    finally:
        db.close()


def _cached_ok(path):
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT COUNT(*) FROM responses WHERE status='ok'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def test_a_killed_run_resumes_with_only_the_missing_prompts(serve, tmp_path):
    answered_first = 5
    release = threading.Event()
    lock = threading.Lock()
    count = [0]

    def first_run(record):
        with lock:
            count[0] += 1
            n = count[0]
        if n <= answered_first:
            return chat_reply(REASONS)
        return Reply(hang=release, body=b"never read")  # in flight when the process dies

    server = serve(first_run)
    script = tmp_path / "child.py"
    script.write_text(RUN_IN_CHILD, encoding="utf-8")
    cache_dir = tmp_path / "cache"
    child = subprocess.Popen([sys.executable, str(script), server.base_url, str(cache_dir)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not (_cached_ok(cache_dir / CACHE_FILE) == answered_first and server.count() > answered_first):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the child never got that far"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        release.set()
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    done_titles = _cached_titles(cache_dir / CACHE_FILE)
    assert len(done_titles) == answered_first

    rerun_server = serve(ScriptedChat({}, default=lambda r: chat_reply(REASONS)))
    config = llm_config_for(rerun_server)
    result = generate_item_motivations([(f"i{k}", f"Game {k}", "d") for k in range(12)], config, cache_dir,
                                       progress=False)
    asked = {r.user_text.split("Title: ")[1].split("\n")[0] for r in rerun_server.requests}
    assert asked == {f"Game {k}" for k in range(12)} - done_titles
    assert result.report.cache_hits == answered_first and result.report.requests == 12 - answered_first
    assert all(value for value in result.values())


def test_backend_none_is_a_clear_error(tmp_path):
    with pytest.raises(LLMConfigError, match="backend is 'none'"):
        generate_item_motivations(items(1), LLMConfig(backend="none"), tmp_path, progress=False)


def test_gguf_without_llama_cpp_names_the_package_to_install(tmp_path, monkeypatch, serve):
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    config = LLMConfig(backend="gguf", gguf_path=str(model))
    with pytest.raises(LLMConfigError, match="pip install llama-cpp-python"):
        generate_item_motivations(items(1), config, tmp_path / "cache", progress=False)


def test_gguf_backend_runs_through_llama_cpp(tmp_path, monkeypatch):
    calls = []

    class FakeLlama:
        def __init__(self, model_path, n_ctx, seed, verbose):
            calls.append(("load", os.path.basename(model_path)))

        def create_chat_completion(self, messages, temperature, max_tokens):
            calls.append(("chat", messages[-1]["content"].count("Title:"), temperature, max_tokens))
            return {"choices": [{"message": {"role": "assistant", "content": REASONS}}],
                    "usage": {"prompt_tokens": 40, "completion_tokens": 9}}

    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(Llama=FakeLlama))
    model = tmp_path / "tiny-q4.gguf"
    model.write_bytes(b"GGUF")
    config = LLMConfig(backend="gguf", gguf_path=str(model), max_tokens=64)
    result = generate_item_motivations(items(3), config, tmp_path / "cache", progress=False)
    assert all(len(v) == 3 for v in result.values())
    assert calls[0] == ("load", "tiny-q4.gguf") and calls[1:] == [("chat", 1, 0.0, 64)] * 3
    assert result.report.model == "tiny-q4.gguf" and result.report.prompt_tokens == 120
    # Everything cached: a rerun needs no model at all.
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    again = generate_item_motivations(items(3), config, tmp_path / "cache", progress=False)
    assert again == result and again.report.cache_hits == 3


def test_an_injected_client_is_used_and_progress_is_shown(serve, tmp_path, capsys):
    server = serve(ScriptedChat({}, default=lambda r: chat_reply(REASONS)))
    config = llm_config_for(server)
    config.cache_dir = str(tmp_path / "from_config")
    client = ChatClient.from_endpoint(config.endpoint)
    generate_item_motivations(items(3), config, progress=True, client=client)
    assert client.usage.requests == 3
    assert "item motivations" in capsys.readouterr().err
    assert (tmp_path / "from_config" / CACHE_FILE).is_file()
    config.cache_dir = None
    with pytest.raises(ValueError, match="pass cache_dir"):
        generate_item_motivations(items(3), config, progress=False)
