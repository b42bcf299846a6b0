"""A TextEncoder over an OpenAI-compatible `/embeddings` endpoint.

Texts go out in requests of `endpoint.batch_size`, at most `endpoint.max_concurrency` at a
time, each with the timeout and retry policy of the chat client. Vectors come back in input
order (by the response's `index`), as float32 rows with unit L2 norm. Any batch that still
fails after its retries fails the whole call: an encoder has no partial result.
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, Callable, List, Mapping, Optional, Sequence

import numpy as np

from tfrs_llmrec.config.schema import HttpEndpointConfig
from tfrs_llmrec.llm.client import (
    HttpJsonTransport,
    InvalidOutput,
    LLMConfigError,
    LLMRequestError,
    RetryPolicy,
    TokenUsage,
    call_with_retries,
    endpoint_host,
)

# Text sent to learn the dimension when `dimension` is read before any `encode`.
DIMENSION_PROBE = "dimension probe"


class OpenAIEmbeddingsEncoder:
    """TextEncoder (see tfrs_llmrec.encoders.base) backed by `POST {base_url}/embeddings`."""

    def __init__(self, endpoint: HttpEndpointConfig, *, sleep: Optional[Callable[[float], None]] = None,
                 rng: Optional[random.Random] = None):
        if not endpoint.model:
            raise LLMConfigError("endpoint.model is empty; name the embedding model the server should run")
        self.endpoint = endpoint
        self.model = endpoint.model
        self.batch_size = int(endpoint.batch_size)
        self.max_concurrency = int(endpoint.max_concurrency)
        self._transport = HttpJsonTransport(endpoint)
        self.redact = self._transport.redact
        self._policy = RetryPolicy.from_endpoint(endpoint, sleep=sleep, rng=rng)
        self._dimension: Optional[int] = None
        self._lock = threading.Lock()
        self.usage = TokenUsage()

    def __repr__(self) -> str:
        return f"OpenAIEmbeddingsEncoder(identity={self.identity!r})"

    @property
    def identity(self) -> str:
        return f"openai:{self.model}@{endpoint_host(self.endpoint.base_url)}"

    @property
    def dimension(self) -> int:
        """Learned from the first response (one short probe request if nothing was encoded yet)."""
        if self._dimension is None:
            self.encode([DIMENSION_PROBE])
        assert self._dimension is not None
        return self._dimension

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{position}] is {type(text).__name__}, expected str")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # OpenAI rejects empty strings; a single space embeds as "no text".
        texts = [text if text.strip() else " " for text in texts]
        starts = list(range(0, len(texts), self.batch_size))
        rows: List[Optional[np.ndarray]] = [None] * len(starts)
        if len(starts) == 1:
            rows[0] = self._encode_batch(texts, 0)
        else:
            pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(starts)),
                                      thread_name_prefix="llm-embed")
            futures = {pool.submit(self._encode_batch, texts[s:s + self.batch_size], s): i
                       for i, s in enumerate(starts)}
            try:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                for future in done:
                    error = future.exception()
                    if error is not None:
                        raise error
                for future, i in futures.items():
                    rows[i] = future.result()
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
        return np.concatenate(rows, axis=0)

    def _encode_batch(self, batch: List[str], offset: int) -> np.ndarray:
        body = {"model": self.model, "input": batch}
        tokens = [0]

        def attempt() -> np.ndarray:
            data = self._transport.post("/embeddings", body)
            usage = data.get("usage")
            if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), (int, float)):
                tokens[0] += int(usage["prompt_tokens"])
            return self._vectors(data, len(batch))

        outcome = call_with_retries(attempt, self._policy, self.redact,
                                    what=f"embeddings request for texts {offset}..{offset + len(batch) - 1}")
        self.usage.add(prompt_tokens=tokens[0], requests=1, attempts=outcome.attempts,
                       failures=0 if outcome.ok else 1)
        if not outcome.ok:
            message = self.redact(f"embeddings request for texts {offset}..{offset + len(batch) - 1} "
                                  f"to {self.identity} failed: {outcome.error}")
            raise LLMRequestError(message)
        return outcome.value

    def _vectors(self, data: Mapping[str, Any], expected: int) -> np.ndarray:
        entries = data.get("data")
        if not isinstance(entries, list) or len(entries) != expected:
            count = len(entries) if isinstance(entries, list) else "no"
            raise InvalidOutput(f"expected {expected} embeddings, got {count}")
        ordered: List[Optional[List[float]]] = [None] * expected
        for position, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("embedding"), list):
                raise InvalidOutput(f"data[{position}] has no embedding list")
            index = entry.get("index", position)
            if not isinstance(index, int) or not 0 <= index < expected or ordered[index] is not None:
                raise InvalidOutput(f"data[{position}] has a bad or repeated index {index!r}")
            ordered[index] = entry["embedding"]
        try:
            matrix = np.asarray(ordered, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidOutput("embeddings are not equal-length lists of numbers") from None
        if matrix.ndim != 2 or matrix.shape[1] == 0:
            raise InvalidOutput(f"embeddings have shape {matrix.shape}, expected ({expected}, dim)")
        if not np.isfinite(matrix).all():
            raise InvalidOutput("embeddings contain NaN or infinite values")
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        if (norms == 0.0).any():
            raise InvalidOutput("an embedding is all zeros and cannot be normalised")
        with self._lock:
            if self._dimension is None:
                self._dimension = int(matrix.shape[1])
            elif matrix.shape[1] != self._dimension:
                raise InvalidOutput(f"embedding dimension {matrix.shape[1]} differs from the earlier {self._dimension}")
        return (matrix / norms).astype(np.float32)

