"""The model client: one httpx client per process, Ollama and OpenAI dialects, error mapping.

::

    client = get_client(settings)
    answer = client.complete("fenrir-chat", prompt, tags=TaskTags(bead="bd-12", kind="text"))

Modules: :mod:`~yggcelery.llm.types` (Completion, TaskTags), :mod:`~yggcelery.llm.wire` (request
building, answer parsing, the status → error mapping, no I/O), :mod:`~yggcelery.llm.client` (the
sync and async clients), :mod:`~yggcelery.llm.breaker` (the per-host circuit breaker),
:mod:`~yggcelery.llm.cloud` (the cloud fallback and its budget), :mod:`~yggcelery.llm.health`
(host up/down for routing) and :mod:`~yggcelery.llm.fake` (a scripted model server for tests).
Retries and the fallback decision are the work path's (:mod:`yggcelery.work`).
"""

from __future__ import annotations

from yggcelery.llm.client import AsyncLLMClient, LLMClient, get_client
from yggcelery.llm.types import TAG_HEADERS, Completion, TaskTags
from yggcelery.llm.wire import ModelRequest, build_request, http_timeout, parse_response

__all__ = [
    "TAG_HEADERS",
    "AsyncLLMClient",
    "Completion",
    "LLMClient",
    "ModelRequest",
    "TaskTags",
    "build_request",
    "get_client",
    "http_timeout",
    "parse_response",
]
