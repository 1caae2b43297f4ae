"""The model client: one httpx client per process, Ollama and OpenAI dialects, error mapping.

::

    client = get_client(settings)
    answer = client.complete("fenrir-chat", prompt, tags=TaskTags(bead="bd-12", kind="text"))

Modules: :mod:`~yggcelery.llm.types` (Completion, TaskTags), :mod:`~yggcelery.llm.wire` (request
building, answer parsing, the status → error mapping, no I/O), :mod:`~yggcelery.llm.client` (the
sync and async clients), :mod:`~yggcelery.llm.policy` (retries, breaker, cloud fallback) and
:mod:`~yggcelery.llm.fake` (a scripted model server for tests).
"""

from __future__ import annotations

from yggcelery.llm.client import AsyncLLMClient, LLMClient, get_client
from yggcelery.llm.policy import (
    RetryPlan,
    acomplete_with_fallback,
    backoff_s,
    complete_with_fallback,
)
from yggcelery.llm.types import TAG_HEADERS, Completion, TaskTags
from yggcelery.llm.wire import ModelRequest, build_request, http_timeout, parse_response

__all__ = [
    "TAG_HEADERS",
    "AsyncLLMClient",
    "Completion",
    "LLMClient",
    "ModelRequest",
    "RetryPlan",
    "TaskTags",
    "acomplete_with_fallback",
    "backoff_s",
    "build_request",
    "complete_with_fallback",
    "get_client",
    "http_timeout",
    "parse_response",
]
