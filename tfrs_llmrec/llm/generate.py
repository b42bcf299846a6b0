"""Offline generation of LLM texts: item motivations (MotiR) and explicit user interests (EIMF).

Both are cached, resumable batch jobs: every response is stored as it arrives, a rerun sends
only the prompts without a stored success, and identical prompts are sent once. Training and
serving read the results; they never call an LLM.

Backends (`LLMConfig.backend`): "openai" sends chat completions to an OpenAI-compatible
server (vLLM, Ollama, llama.cpp's server, a hosted API); "gguf" runs a local GGUF file
through the optional llama-cpp-python package, imported only when a prompt has to be sent;
"none" means no generation, and asking for some is an error.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Hashable, List, Mapping, Optional, Sequence, Tuple, Union

from tqdm.auto import tqdm

from tfrs_llmrec.config.schema import LLMConfig
from tfrs_llmrec.llm.cache import CacheRecordInfo, ResponseCache
from tfrs_llmrec.llm.client import (
    ChatClient,
    ChatRequest,
    ChatResponse,
    ChatResult,
    LLMConfigError,
    PermanentError,
    chat_response_from_json,
)
from tfrs_llmrec.llm.parsing import string_list_validator
from tfrs_llmrec.llm.prompts import ITEM_MOTIVATION, USER_INTERESTS, load_prompt

logger = logging.getLogger(__name__)

# MotiR asks for 3-5 motivations; fewer than this many usable phrases is a failed answer.
MIN_MOTIVATIONS = 1
MAX_MOTIVATIONS = 5
DEFAULT_MAX_DESCRIPTION_CHARS = 1500
DEFAULT_MAX_HISTORY_TITLES = 50
DEFAULT_MAX_TITLE_CHARS = 300
GGUF_CONTEXT_TOKENS = 4096
_KEPT_FAILURE_REASONS = 10

PathLike = Union[str, os.PathLike]


@dataclass
class GenerationReport:
    """What one generation call did.

    `requests` counts prompts sent to the backend, `attempts` the backend calls including
    retries; tokens are those this run spent (cache hits cost none)."""

    task: str
    backend: str
    model: str
    prompt: str
    ids: int = 0
    prompts: int = 0
    skipped: int = 0
    cache_hits: int = 0
    requests: int = 0
    attempts: int = 0
    generated: int = 0
    failures: int = 0
    retried_failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    failure_reasons: Dict[str, int] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def cost(self, prompt_price_per_1k: float, completion_price_per_1k: float) -> float:
        """Spend at the given prices per 1000 tokens."""
        return (self.prompt_tokens * prompt_price_per_1k + self.completion_tokens * completion_price_per_1k) / 1000.0

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (f"{self.task} [{self.backend}:{self.model}, {self.prompt}]: {self.ids} ids, {self.prompts} prompts, "
                f"{self.cache_hits} cached, {self.requests} sent ({self.attempts} attempts), "
                f"{self.generated} generated, {self.failures} failed, {self.skipped} skipped; "
                f"{self.prompt_tokens} prompt + {self.completion_tokens} completion tokens in {self.seconds:.1f}s")


class Generated(dict):
    """id -> list of phrases, or None where generation failed or there was no text to send.
    A plain dict with the run's `report` attached."""

    report: GenerationReport


class LlamaCppChatBackend:
    """One chat completion from a local GGUF model through llama-cpp-python (optional)."""

    def __init__(self, model_path: PathLike, temperature: float = 0.0, max_tokens: int = 256,
                 n_ctx: int = GGUF_CONTEXT_TOKENS, seed: int = 0):
        try:
            import llama_cpp  # the optional [gguf] extra
        except ImportError:
            raise LLMConfigError(
                "backend 'gguf' needs the optional package llama-cpp-python, which is not installed: "
                "pip install llama-cpp-python (it builds from source), or use backend 'openai' with a "
                "local OpenAI-compatible server (vLLM, Ollama, llama.cpp's server)") from None
        path = Path(model_path)
        if not path.is_file():
            raise LLMConfigError(f"gguf_path {str(path)!r} is not a file")
        self.model_path = path
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self._llm = llama_cpp.Llama(model_path=str(path), n_ctx=int(n_ctx), seed=int(seed), verbose=False)

    def __call__(self, messages: Sequence[Mapping[str, str]]) -> ChatResponse:
        try:
            data = self._llm.create_chat_completion(messages=[dict(m) for m in messages],
                                                    temperature=self.temperature, max_tokens=self.max_tokens)
        except ValueError as exc:  # llama.cpp raises ValueError for prompts beyond the context
            raise PermanentError(f"llama.cpp rejected the prompt: {exc}") from None
        return chat_response_from_json(data)


def model_name(config: LLMConfig) -> str:
    """The model as named in cache keys: endpoint.model, or the GGUF file's name."""
    if config.backend == "gguf":
        return Path(config.gguf_path or "").name
    return config.endpoint.model


def _check_backend(config: LLMConfig) -> None:
    if config.backend == "none":
        raise LLMConfigError("features.llm.backend is 'none', so no LLM texts can be generated; "
                             "set it to 'openai' (with endpoint.base_url and endpoint.model) or 'gguf' "
                             "(with gguf_path)")
    if config.backend not in ("openai", "gguf"):
        raise LLMConfigError(f"unknown features.llm.backend {config.backend!r}; expected 'openai' or 'gguf'")
    problem = config.validate()
    if problem is not None:
        raise LLMConfigError(f"features.llm.{problem[0]}: {problem[1]}")


def make_chat_client(config: LLMConfig) -> ChatClient:
    """The client for `config.backend` (imports llama-cpp-python only for 'gguf')."""
    _check_backend(config)
    endpoint = config.endpoint
    if config.backend == "openai":
        return ChatClient.from_endpoint(endpoint, temperature=config.temperature, max_tokens=config.max_tokens)
    backend = LlamaCppChatBackend(config.gguf_path or "", temperature=config.temperature,
                                  max_tokens=config.max_tokens)
    # One local model is not thread-safe and has nothing to wait for between retries.
    return ChatClient(backend, max_retries=endpoint.max_retries, backoff_s=0.0, max_concurrency=1,
                      batch_size=endpoint.batch_size)


def _clean(text: Optional[str], limit: int) -> str:
    flat = " ".join(str(text).split()) if text is not None else ""
    return flat if len(flat) <= limit else flat[:limit].rstrip() + "..."


def _run(task: str, prompt_name: str, jobs: Mapping[Hashable, Optional[Dict[str, Any]]],
         validator: Callable[[str], List[str]], config: LLMConfig, cache_dir: Optional[PathLike],
         progress: bool, client: Optional[ChatClient]) -> Generated:
    started = time.monotonic()
    _check_backend(config)
    cache_dir = cache_dir if cache_dir is not None else config.cache_dir
    if cache_dir is None:
        raise ValueError(f"{task}: pass cache_dir or set features.llm.cache_dir")
    prompt = load_prompt(prompt_name, config.prompt_version)
    model = model_name(config)
    report = GenerationReport(task=task, backend=config.backend, model=model, prompt=prompt.identity, ids=len(jobs))
    params = {"temperature": float(config.temperature), "max_tokens": int(config.max_tokens)}

    infos: Dict[str, CacheRecordInfo] = {}
    key_of: Dict[Hashable, Optional[str]] = {}
    for job_id, inputs in jobs.items():
        if inputs is None:
            key_of[job_id] = None
            report.skipped += 1
            continue
        info = CacheRecordInfo(config.backend, model, prompt.name, prompt.version, inputs, params)
        key = info.key()
        infos.setdefault(key, info)
        key_of[job_id] = key
    report.prompts = len(infos)

    values: Dict[str, Any] = {}
    with ResponseCache(cache_dir) as cache:
        cached = cache.get_many(infos)
        values.update({key: entry.value for key, entry in cached.items() if entry.ok})
        report.cache_hits = len(values)
        missing = [key for key in infos if key not in values]
        report.retried_failures = sum(1 for key in missing if key in cached)
        if missing:
            logger.info("%s: %d of %d prompts cached, sending %d (%d failed before)", task, report.cache_hits,
                        report.prompts, len(missing), report.retried_failures)
            chat = client if client is not None else make_chat_client(config)
            requests = [ChatRequest(key, prompt.render(**infos[key].inputs)) for key in missing]
            reasons: Counter = Counter()
            bar = tqdm(total=report.prompts, initial=report.cache_hits, desc=task, unit="prompt",
                       disable=not progress, leave=False)

            def store(request: ChatRequest, result: ChatResult) -> None:
                info = infos[request.key]
                report.requests += 1
                report.attempts += result.attempts
                report.prompt_tokens += result.prompt_tokens
                report.completion_tokens += result.completion_tokens
                if result.ok:
                    cache.put_success(info, result.value, raw=result.raw, attempts=result.attempts,
                                      prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens)
                    values[request.key] = result.value
                    report.generated += 1
                else:
                    reason = result.error or "unknown error"
                    cache.put_failure(info, reason, raw=result.raw, attempts=result.attempts,
                                      prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens)
                    report.failures += 1
                    reasons[reason[:200]] += 1
                bar.update(1)

            try:
                chat.complete_many(requests, validator, on_result=store)
            finally:
                bar.close()
            report.failure_reasons = dict(reasons.most_common(_KEPT_FAILURE_REASONS))

    output = Generated((job_id, None if key is None else values.get(key)) for job_id, key in key_of.items())
    report.seconds = time.monotonic() - started
    output.report = report
    log = logger.warning if report.failures else logger.info
    log("%s", report.summary())
    return output


def item_motivation_inputs(title: Optional[str], description: Optional[str],
                           max_description_chars: int = DEFAULT_MAX_DESCRIPTION_CHARS) -> Optional[Dict[str, str]]:
    """The template fields for one item, or None when it has no text at all."""
    title = _clean(title, DEFAULT_MAX_TITLE_CHARS)
    description = _clean(description, max_description_chars)
    if not title and not description:
        return None
    return {"title": title or "(no title)", "description": description or "(no description)"}


def user_interest_inputs(titles: Sequence[Optional[str]], max_interests: int,
                         max_history_titles: int = DEFAULT_MAX_HISTORY_TITLES) -> Optional[Dict[str, Any]]:
    """The template fields for one user's chronological titles (most recent kept), or None."""
    cleaned = [t for t in (_clean(title, DEFAULT_MAX_TITLE_CHARS) for title in titles) if t]
    if not cleaned:
        return None
    recent = cleaned[-max_history_titles:]
    history = "\n".join(f"{position}. {title}" for position, title in enumerate(recent, start=1))
    return {"history": history, "max_interests": int(max_interests)}


def generate_item_motivations(items: Sequence[Tuple[Hashable, Optional[str], Optional[str]]], config: LLMConfig,
                              cache_dir: Optional[PathLike] = None, *, progress: bool = True,
                              max_description_chars: int = DEFAULT_MAX_DESCRIPTION_CHARS,
                              client: Optional[ChatClient] = None) -> Generated:
    """item_id -> 1-5 purchase motivations (MotiR), or None where generation failed or the item
    has neither title nor description. `items` holds (item_id, title, description) tuples;
    responses are cached under `cache_dir` (default: `config.cache_dir`)."""
    jobs: Dict[Hashable, Optional[Dict[str, Any]]] = {}
    for item_id, title, description in items:
        inputs = item_motivation_inputs(title, description, max_description_chars)
        if item_id in jobs and jobs[item_id] != inputs:
            raise ValueError(f"item {item_id!r} appears twice with different text")
        jobs[item_id] = inputs
    validator = string_list_validator(min_items=MIN_MOTIVATIONS, max_items=MAX_MOTIVATIONS)
    return _run("item motivations", ITEM_MOTIVATION, jobs, validator, config, cache_dir, progress, client)


def generate_user_interests(user_texts: Mapping[Hashable, Sequence[Optional[str]]], config: LLMConfig,
                            cache_dir: Optional[PathLike] = None, *, progress: bool = True,
                            max_history_titles: int = DEFAULT_MAX_HISTORY_TITLES,
                            client: Optional[ChatClient] = None) -> Generated:
    """user_id -> at most `config.max_interests` interest phrases (EIMF), or None where
    generation failed or the history is empty. Titles must be in chronological order (the last
    `max_history_titles` are sent); responses are cached under `cache_dir` (default:
    `config.cache_dir`)."""
    jobs = {user_id: user_interest_inputs(titles, config.max_interests, max_history_titles)
            for user_id, titles in user_texts.items()}
    validator = string_list_validator(min_items=1, max_items=int(config.max_interests))
    return _run("user interests", USER_INTERESTS, jobs, validator, config, cache_dir, progress, client)
