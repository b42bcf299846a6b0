"""LLM-generated texts and HTTP embeddings, produced offline and cached on disk.

Nothing at training or serving time calls an LLM: `generate_item_motivations` and
`generate_user_interests` are resumable batch jobs whose results feed the feature pipeline,
and `OpenAIEmbeddingsEncoder` is a TextEncoder for an OpenAI-compatible `/embeddings` server.
"""

from tfrs_llmrec.llm.cache import CacheEntry, CacheRecordInfo, ResponseCache, cache_key
from tfrs_llmrec.llm.client import (
    ChatClient,
    ChatRequest,
    ChatResponse,
    ChatResult,
    HttpJsonTransport,
    InvalidOutput,
    LLMConfigError,
    LLMError,
    LLMRequestError,
    OpenAIChatBackend,
    PermanentError,
    RetryPolicy,
    TokenUsage,
    TransientError,
)
from tfrs_llmrec.llm.embeddings import OpenAIEmbeddingsEncoder
from tfrs_llmrec.llm.generate import (
    GenerationReport,
    Generated,
    LlamaCppChatBackend,
    generate_item_motivations,
    generate_user_interests,
    make_chat_client,
)
from tfrs_llmrec.llm.parsing import parse_json_string_list, string_list_validator
from tfrs_llmrec.llm.prompts import PromptError, PromptTemplate, available_prompts, load_prompt

__all__ = [
    "CacheEntry", "CacheRecordInfo", "ChatClient", "ChatRequest", "ChatResponse", "ChatResult",
    "GenerationReport", "Generated", "HttpJsonTransport", "InvalidOutput", "LLMConfigError", "LLMError",
    "LLMRequestError", "LlamaCppChatBackend", "OpenAIChatBackend", "OpenAIEmbeddingsEncoder",
    "PermanentError", "PromptError", "PromptTemplate", "ResponseCache", "RetryPolicy", "TokenUsage",
    "TransientError", "available_prompts", "cache_key", "generate_item_motivations",
    "generate_user_interests", "load_prompt", "make_chat_client", "parse_json_string_list",
    "string_list_validator",
]
