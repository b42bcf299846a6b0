"""An OpenAI-compatible HTTP client for chat completions, with the machinery every LLM call shares.

One request is one attempt of `POST {base_url}/chat/completions`. Around it:

- a per-request socket timeout (`endpoint.timeout_s`);
- bounded retries (`endpoint.max_retries` after the first attempt) with exponential backoff
  and jitter on timeouts, connection errors, 429 (Retry-After honoured) and 5xx, and on output
  the caller's validator rejects; any other 4xx fails at once;
- many requests at a time through a thread pool of `endpoint.max_concurrency` workers, logged
  and accounted (prompt/completion tokens from the response `usage`) every
  `endpoint.batch_size` results;
- a failed request becomes a `ChatResult` with `ok=False` and a reason, never an exception that
  stops the other requests.

The API key is read only from the environment variable named by `endpoint.api_key_env` and
only ever written into the Authorization header. Every message this module produces (logs,
failure reasons, exceptions, raw outputs handed back for caching) passes through a redactor
that replaces the key, in case a server echoes it.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generic, List, Mapping, Optional, Protocol, Sequence, TypeVar
from urllib.parse import urlsplit

from tfrs_llmrec.config.schema import HttpEndpointConfig

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Later retries wait at most this many times `backoff_s` (before jitter).
BACKOFF_CAP_FACTOR = 30.0
# Jitter adds up to this fraction of the computed wait.
JITTER_FRACTION = 0.25
# A Retry-After longer than this (a quota reset hours away) is waited only this long.
MAX_RETRY_AFTER_S = 120.0
# How much of an error response body is kept in a failure reason.
ERROR_BODY_CHARS = 300
REDACTED = "[REDACTED]"


class LLMError(RuntimeError):
    """Base of the errors raised by the llm package."""


class LLMConfigError(LLMError):
    """The configuration cannot work (a missing API key variable, a missing optional package)."""


class LLMRequestError(LLMError):
    """A request failed for good where no partial result makes sense (embeddings)."""


class TransientError(Exception):
    """One attempt failed in a way a later attempt may not: retried."""

    def __init__(self, message: str, retry_after: Optional[float] = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """One attempt failed in a way retrying cannot fix (a 4xx other than 429): not retried."""


class InvalidOutput(ValueError):
    """The response arrived but its content is unusable: retried like a transient error."""


class Redactor:
    """Replaces secrets in any text that may leave the process (logs, caches, exceptions)."""

    def __init__(self, secrets: Sequence[str] = ()):
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: object) -> str:
        result = text if isinstance(text, str) else str(text)
        for secret in self._secrets:
            result = result.replace(secret, REDACTED)
        return result


def read_api_key(endpoint: HttpEndpointConfig) -> Optional[str]:
    """The key from the environment variable `endpoint.api_key_env` names (None when unnamed)."""
    name = endpoint.api_key_env
    if not name:
        return None
    value = os.environ.get(name, "").strip()
    if not value:
        raise LLMConfigError(
            f"endpoint.api_key_env names the environment variable {name!r}, which is not set "
            "or is empty; export the API key there (it is never read from config files)"
        )
    return value


def endpoint_host(base_url: str) -> str:
    """host[:port] of a URL, without any user:password part."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


@dataclass
class RetryPolicy:
    """How many times and how long to wait: attempt k (k >= 1 failed attempts so far) waits
    min(backoff_s * 2**(k-1), 30 * backoff_s) plus up to 25% jitter, or Retry-After when the
    server sent one (at most `MAX_RETRY_AFTER_S`)."""

    max_retries: int = 4
    backoff_s: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_endpoint(cls, endpoint: HttpEndpointConfig, sleep: Optional[Callable[[float], None]] = None,
                      rng: Optional[random.Random] = None) -> "RetryPolicy":
        return cls(max_retries=endpoint.max_retries, backoff_s=endpoint.backoff_s,
                   sleep=sleep or time.sleep, rng=rng or random.Random())

    def delay(self, failed_attempts: int, retry_after: Optional[float] = None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_S)
        base = min(self.backoff_s * (2.0 ** (failed_attempts - 1)), BACKOFF_CAP_FACTOR * self.backoff_s)
        return base + self.rng.uniform(0.0, JITTER_FRACTION * base)

    def max_delay(self) -> float:
        """The longest backoff wait without a Retry-After."""
        return BACKOFF_CAP_FACTOR * self.backoff_s * (1.0 + JITTER_FRACTION)


@dataclass
class Outcome(Generic[T]):
    ok: bool
    value: Optional[T]
    error: Optional[str]
    attempts: int


def call_with_retries(attempt: Callable[[], T], policy: RetryPolicy, redact: Redactor,
                      what: str = "request") -> Outcome[T]:
    """Runs `attempt` until it returns, fails permanently, or the retries are spent.

    `attempt` signals failures with TransientError, InvalidOutput (both retried) or
    PermanentError (not retried); anything else is a bug and propagates.
    """
    failed = 0
    while True:
        try:
            return Outcome(True, attempt(), None, failed + 1)
        except PermanentError as exc:
            return Outcome(False, None, redact(exc), failed + 1)
        except InvalidOutput as exc:
            retry_after = None
            reason = f"invalid output: {exc}"
        except TransientError as exc:
            retry_after = exc.retry_after
            reason = str(exc)
        failed += 1
        reason = redact(reason)
        if failed > policy.max_retries:
            return Outcome(False, None, f"gave up after {failed} attempts; last error: {reason}", failed)
        pause = policy.delay(failed, retry_after)
        logger.debug("%s attempt %d failed (%s); retrying in %.3fs", what, failed, reason, pause)
        policy.sleep(pause)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: they would carry the POST body (and key) somewhere else."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401
        return None


class HttpJsonTransport:
    """One JSON POST against an OpenAI-compatible base URL, errors sorted into retry classes."""

    def __init__(self, endpoint: HttpEndpointConfig):
        if not endpoint.base_url:
            raise LLMConfigError("endpoint.base_url is empty")
        scheme = urlsplit(endpoint.base_url).scheme
        if scheme not in ("http", "https"):
            raise LLMConfigError(f"endpoint.base_url must be an http(s) URL, got scheme {scheme!r}")
        self.base_url = endpoint.base_url.rstrip("/")
        self.timeout_s = float(endpoint.timeout_s)
        self._api_key = read_api_key(endpoint)
        self.redact = Redactor([self._api_key] if self._api_key else [])
        self._opener = urllib.request.build_opener(_NoRedirect())

    def __repr__(self) -> str:
        return f"HttpJsonTransport(base_url={self.redact(self.base_url)!r}, timeout_s={self.timeout_s})"

    def post(self, path: str, body: Mapping[str, Any]) -> Dict[str, Any]:
        """The decoded JSON response; raises TransientError, PermanentError or InvalidOutput.

        Errors are raised outside the `except` blocks so no urllib exception (whose attributes
        may hold headers) rides along as `__context__`.
        """
        url = self.base_url + path
        request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), method="POST")
        request.add_header("Content-Type", "application/json")
        request.add_header("Accept", "application/json")
        request.add_header("User-Agent", "tfrs_llmrec")
        if self._api_key:
            request.add_unredirected_header("Authorization", f"Bearer {self._api_key}")
        error: Optional[Exception] = None
        raw = b""
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            error = self._http_error(exc)
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                error = TransientError(f"timed out after {self.timeout_s:g}s")
            else:
                error = TransientError(self.redact(f"connection error: {type(reason).__name__}: {reason}"))
        except (TimeoutError, socket.timeout):
            error = TransientError(f"timed out after {self.timeout_s:g}s")
        except (http.client.HTTPException, OSError) as exc:
            error = TransientError(self.redact(f"connection error: {type(exc).__name__}: {exc}"))
        if error is not None:
            raise error
        try:
            decoded = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            decoded = None
        if not isinstance(decoded, dict):
            raise InvalidOutput(self.redact(f"response body is not a JSON object: {_snippet(raw)!r}"))
        return decoded

    def _http_error(self, exc: urllib.error.HTTPError) -> Exception:
        status = exc.code
        try:
            detail = _snippet(exc.read())
        except (OSError, http.client.HTTPException):
            detail = ""
        retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        exc.close()
        message = self.redact(f"HTTP {status}" + (f": {detail}" if detail else ""))
        if status == 429 or 500 <= status <= 599:
            return TransientError(message, retry_after=retry_after)
        if 300 <= status <= 399:
            return PermanentError(message + " (redirects are not followed; check endpoint.base_url)")
        return PermanentError(message)


def _snippet(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace").strip().replace("\n", " ")
    return text[:ERROR_BODY_CHARS] + ("..." if len(text) > ERROR_BODY_CHARS else "")


@dataclass
class ChatResponse:
    """One successful backend call: the assistant's text and the tokens it cost."""

    content: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatBackend(Protocol):
    """One attempt at a chat completion: returns a ChatResponse or raises TransientError,
    PermanentError or InvalidOutput."""

    def __call__(self, messages: Sequence[Mapping[str, str]]) -> ChatResponse: ...


def _usage_tokens(usage: Any, name: str) -> int:
    if not isinstance(usage, dict):
        return 0
    value = usage.get(name)
    return int(value) if isinstance(value, (int, float)) and value >= 0 else 0


def chat_response_from_json(data: Mapping[str, Any]) -> ChatResponse:
    """The first choice's message content and the usage of an OpenAI-style response."""
    usage = data.get("usage")
    prompt_tokens = _usage_tokens(usage, "prompt_tokens")
    completion_tokens = _usage_tokens(usage, "completion_tokens")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _InvalidWithUsage("response has no choices", prompt_tokens, completion_tokens)
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise _InvalidWithUsage("response choice has no text content", prompt_tokens, completion_tokens)
    return ChatResponse(content, prompt_tokens, completion_tokens)


class _InvalidWithUsage(InvalidOutput):
    """Invalid output that still cost tokens."""

    def __init__(self, message: str, prompt_tokens: int, completion_tokens: int):
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens


class OpenAIChatBackend:
    """`POST {base_url}/chat/completions` with model, messages, temperature and max_tokens."""

    def __init__(self, endpoint: HttpEndpointConfig, temperature: float = 0.0, max_tokens: int = 256):
        if not endpoint.model:
            raise LLMConfigError("endpoint.model is empty; name the model the server should run")
        self.model = endpoint.model
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.transport = HttpJsonTransport(endpoint)
        self.redact = self.transport.redact

    def __repr__(self) -> str:
        return f"OpenAIChatBackend(model={self.model!r}, transport={self.transport!r})"

    def __call__(self, messages: Sequence[Mapping[str, str]]) -> ChatResponse:
        body = {"model": self.model, "messages": [dict(m) for m in messages],
                "temperature": self.temperature, "max_tokens": self.max_tokens}
        return chat_response_from_json(self.transport.post("/chat/completions", body))


@dataclass
class TokenUsage:
    """Token counts, summed thread-safely."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    attempts: int = 0
    failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, prompt_tokens: int = 0, completion_tokens: int = 0, requests: int = 0,
            attempts: int = 0, failures: int = 0) -> None:
        with self._lock:
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.requests += requests
            self.attempts += attempts
            self.failures += failures

    def describe(self) -> str:
        return (f"{self.requests} requests ({self.attempts} attempts, {self.failures} failed), "
                f"{self.prompt_tokens} prompt + {self.completion_tokens} completion tokens")


@dataclass
class ChatRequest(Generic[T]):
    """One prompt to complete; `key` identifies it to the caller (a cache key, an item id)."""

    key: str
    messages: Sequence[Mapping[str, str]]


@dataclass
class ChatResult(Generic[T]):
    key: str
    ok: bool
    # The validator's return value (the raw text when there is no validator).
    value: Optional[T]
    # The last response text (redacted), kept for the cache; None when nothing arrived.
    raw: Optional[str]
    error: Optional[str]
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float


Validator = Callable[[str], Any]


class ChatClient:
    """Retries, validation, concurrency and accounting around a ChatBackend."""

    def __init__(self, backend: ChatBackend, *, max_retries: int = 4, backoff_s: float = 1.0,
                 max_concurrency: int = 4, batch_size: int = 16,
                 sleep: Optional[Callable[[float], None]] = None, rng: Optional[random.Random] = None,
                 redact: Optional[Redactor] = None):
        if max_concurrency < 1 or batch_size < 1 or max_retries < 0 or backoff_s < 0:
            raise ValueError("max_concurrency and batch_size must be >= 1, max_retries and backoff_s >= 0")
        self.backend = backend
        self.policy = RetryPolicy(max_retries=max_retries, backoff_s=backoff_s,
                                  sleep=sleep or time.sleep, rng=rng or random.Random())
        self.max_concurrency = int(max_concurrency)
        self.batch_size = int(batch_size)
        self.redact = redact or getattr(backend, "redact", None) or Redactor()
        self.usage = TokenUsage()

    @classmethod
    def from_endpoint(cls, endpoint: HttpEndpointConfig, *, temperature: float = 0.0,
                      max_tokens: int = 256, sleep: Optional[Callable[[float], None]] = None,
                      rng: Optional[random.Random] = None) -> "ChatClient":
        backend = OpenAIChatBackend(endpoint, temperature=temperature, max_tokens=max_tokens)
        return cls(backend, max_retries=endpoint.max_retries, backoff_s=endpoint.backoff_s,
                   max_concurrency=endpoint.max_concurrency, batch_size=endpoint.batch_size,
                   sleep=sleep, rng=rng, redact=backend.redact)

    def complete(self, messages: Sequence[Mapping[str, str]], validator: Optional[Validator] = None,
                 key: str = "") -> ChatResult:
        """One prompt, retried as the policy allows; failures come back as ok=False."""
        started = time.monotonic()
        spent = {"prompt": 0, "completion": 0}
        last_raw: List[Optional[str]] = [None]

        def attempt():
            try:
                response = self.backend(messages)
            except _InvalidWithUsage as exc:
                spent["prompt"] += exc.prompt_tokens
                spent["completion"] += exc.completion_tokens
                raise
            spent["prompt"] += response.prompt_tokens
            spent["completion"] += response.completion_tokens
            # Validated (and cached) output is built from the redacted text, so a model that
            # echoes the key cannot carry it into the cache either.
            content = self.redact(response.content)
            last_raw[0] = content
            if validator is None:
                return content
            try:
                return validator(content)
            except InvalidOutput:
                raise
            except (ValueError, TypeError, KeyError) as exc:
                raise InvalidOutput(f"{type(exc).__name__}: {exc}") from None

        outcome = call_with_retries(attempt, self.policy, self.redact, what=f"chat request {key}".strip())
        result = ChatResult(key=key, ok=outcome.ok, value=outcome.value, raw=last_raw[0],
                            error=outcome.error, attempts=outcome.attempts,
                            prompt_tokens=spent["prompt"], completion_tokens=spent["completion"],
                            seconds=time.monotonic() - started)
        self.usage.add(result.prompt_tokens, result.completion_tokens, requests=1,
                       attempts=result.attempts, failures=0 if result.ok else 1)
        if not result.ok:
            logger.warning("chat request %s failed: %s", key or "(unnamed)", result.error)
        return result

    def complete_many(self, requests: Sequence[ChatRequest], validator: Optional[Validator] = None,
                      on_result: Optional[Callable[[ChatRequest, ChatResult], None]] = None) -> List[ChatResult]:
        """All requests, at most `max_concurrency` in flight; results in request order.

        `on_result` runs in the calling thread as each result arrives (so it may write to a
        cache that is not thread-safe). Usage is logged every `batch_size` results.
        """
        results: List[Optional[ChatResult]] = [None] * len(requests)
        if not requests:
            return []
        pool = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="llm-chat")
        pending: Dict[Future, int] = {}
        next_index = 0
        batch = TokenUsage()
        batch_number = 0
        total_batches = -(-len(requests) // self.batch_size)
        window = 2 * self.max_concurrency
        finished = False
        try:
            while next_index < len(requests) or pending:
                while next_index < len(requests) and len(pending) < window:
                    request = requests[next_index]
                    pending[pool.submit(self.complete, request.messages, validator, request.key)] = next_index
                    next_index += 1
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    result = future.result()
                    results[index] = result
                    batch.add(result.prompt_tokens, result.completion_tokens, requests=1,
                              attempts=result.attempts, failures=0 if result.ok else 1)
                    if on_result is not None:
                        on_result(requests[index], result)
                    if batch.requests == self.batch_size:
                        batch_number += 1
                        self._log_batch(batch_number, total_batches, batch)
                        batch = TokenUsage()
            if batch.requests:
                batch_number += 1
                self._log_batch(batch_number, total_batches, batch)
            finished = True
        finally:
            pool.shutdown(wait=finished, cancel_futures=True)
        logger.info("LLM totals: %s", self.usage.describe())
        return [r for r in results if r is not None]

    def _log_batch(self, number: int, total: int, batch: TokenUsage) -> None:
        logger.info("LLM batch %d/%d: %s; running total %d prompt + %d completion tokens",
                    number, total, batch.describe(), self.usage.prompt_tokens, self.usage.completion_tokens)
