"""A scripted OpenAI-compatible server on 127.0.0.1 for the llm tests.

Each POST is recorded (path, headers, JSON body) and answered by a responder function, which
returns a `Reply`: a status, a JSON (or raw) body, headers, an optional delay before answering
(longer than the client's timeout to simulate a timeout) or an event to hang on. The server
tracks how many requests are in flight at once.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from tfrs_llmrec.config.schema import HttpEndpointConfig, LLMConfig


@dataclass
class Reply:
    status: int = 200
    body: Union[Dict[str, Any], bytes, str, None] = None
    headers: Dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: Optional[threading.Event] = None


@dataclass
class Recorded:
    path: str
    headers: Dict[str, str]
    body: Any
    number: int

    @property
    def user_text(self) -> str:
        """The last user message of a chat request."""
        messages = self.body.get("messages", []) if isinstance(self.body, dict) else []
        users = [m.get("content", "") for m in messages if m.get("role") == "user"]
        return users[-1] if users else ""


def chat_reply(content: str, prompt_tokens: int = 10, completion_tokens: int = 5, **kwargs) -> Reply:
    return Reply(body={"id": "x", "object": "chat.completion",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                 "total_tokens": prompt_tokens + completion_tokens}}, **kwargs)


def error_reply(status: int, message: str = "error", **kwargs) -> Reply:
    return Reply(status=status, body={"error": {"message": message}}, **kwargs)


def fake_vector(text: str, dim: int = 8) -> List[float]:
    """A deterministic, unnormalised vector for a text."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [float(b) - 100.0 for b in digest[:dim]]


def embeddings_reply(texts: Sequence[str], dim: int = 8, reverse: bool = True, **kwargs) -> Reply:
    """Embeddings for `texts`, listed in reverse order with their indices (clients must sort)."""
    data = [{"object": "embedding", "index": i, "embedding": fake_vector(t, dim)} for i, t in enumerate(texts)]
    if reverse:
        data = data[::-1]
    return Reply(body={"object": "list", "data": data, "model": "emb",
                       "usage": {"prompt_tokens": 2 * len(texts), "total_tokens": 2 * len(texts)}}, **kwargs)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64


class FakeOpenAIServer:
    def __init__(self, responder: Callable[[Recorded], Reply]):
        self.responder = responder
        self.requests: List[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.answered: List[Recorded] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002  (silence the default stderr log)
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw.decode("utf-8"))
                except ValueError:
                    body = None
                with owner._lock:
                    record = Recorded(self.path, dict(self.headers.items()), body, len(owner.requests))
                    owner.requests.append(record)
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                counted = True
                try:
                    reply = owner.responder(record)
                    if reply.delay:
                        time.sleep(reply.delay)
                    if reply.hang is not None:
                        reply.hang.wait(timeout=30)
                    if isinstance(reply.body, dict):
                        payload = json.dumps(reply.body).encode("utf-8")
                    elif isinstance(reply.body, str):
                        payload = reply.body.encode("utf-8")
                    else:
                        payload = reply.body or b""
                    # The client frees its slot only after reading this reply, so the request stops
                    # counting as in flight before the reply is written, or the count would race.
                    with owner._lock:
                        owner.in_flight -= 1
                    counted = False
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                    self.wfile.flush()
                    with owner._lock:
                        owner.answered.append(record)
                except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                    pass
                finally:
                    if counted:
                        with owner._lock:
                            owner.in_flight -= 1

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "FakeOpenAIServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def count(self, predicate: Callable[[Recorded], bool] = lambda r: True) -> int:
        with self._lock:
            return sum(1 for r in self.requests if predicate(r))


class ScriptedChat:
    """Answers chat requests per prompt: the first marker found in the user message selects a
    list of replies, consumed one per attempt (the last one repeats). Unmatched prompts get
    `default(record)`."""

    def __init__(self, scripts: Dict[str, Sequence[Reply]], default: Optional[Callable[[Recorded], Reply]] = None):
        self.scripts = {marker: list(replies) for marker, replies in scripts.items()}
        self.default = default or (lambda record: chat_reply('["a reason", "another reason", "a third"]'))
        self.attempts: Dict[str, int] = {marker: 0 for marker in scripts}
        self._lock = threading.Lock()

    def __call__(self, record: Recorded) -> Reply:
        text = record.user_text
        for marker, replies in self.scripts.items():
            if marker in text:
                with self._lock:
                    n = self.attempts[marker]
                    self.attempts[marker] = n + 1
                return replies[min(n, len(replies) - 1)]
        return self.default(record)


def endpoint_for(server, **overrides) -> HttpEndpointConfig:
    """An endpoint on `server` with small timeouts, backoffs and batches."""
    values = dict(base_url=server.base_url, model="test-model", timeout_s=2.0, max_retries=3,
                  backoff_s=0.01, max_concurrency=2, batch_size=4)
    values.update(overrides)
    return HttpEndpointConfig(**values)


def llm_config_for(server, **endpoint_overrides) -> LLMConfig:
    return LLMConfig(backend="openai", endpoint=endpoint_for(server, **endpoint_overrides))
