"""Shared fixtures: a scripted loopback server and endpoints with tiny timeouts and backoffs."""

import pytest

from tests.llm.fake_openai import FakeOpenAIServer


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch):
    # A proxy from the environment must not intercept requests to the test server.
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def serve():
    """serve(responder) -> a started FakeOpenAIServer, stopped after the test."""
    servers = []

    def start(responder):
        server = FakeOpenAIServer(responder).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()

