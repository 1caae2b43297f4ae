"""Perform a work order: prompt → model client → retries → cloud fallback → outcome.

The one work path of every dispatcher. The Celery task (``tasks.run_bead``) calls
:func:`perform` in a worker's pool process, the legacy dispatcher on an agent thread, the
asyncio dispatcher :func:`aperform` on its event loop; they differ only in how work is queued and
where it runs. What a failure means is :func:`~yggcelery.work.fate.fate`'s to say: a ``RETRY``
is slept and tried again here, a ``FALLBACK`` goes to the cloud, and when the attempt is over
(``REQUEUE`` or ``BLOCK``) the error is raised for whoever writes Beads, who asks the same
function with the bead's attempt count.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from yggcelery.errors import CloudBudgetExceeded, HostRejected, TransientError, YggError
from yggcelery.llm.breaker import CircuitState
from yggcelery.llm.types import Completion
from yggcelery.outcomes import BeadResult
from yggcelery.routing import CLOUD_QUEUE
from yggcelery.settings import Settings
from yggcelery.work.fate import Failure, Fate, Verdict, fate
from yggcelery.work.order import WorkOrder
from yggcelery.work.prompt import Prompt, PromptLimit, build_prompt
from yggcelery.work.resources import AsyncResources, Resources

log = logging.getLogger(__name__)

#: The target name of the cloud fallback in prompt limits and result footers.
CLOUD = "cloud"


def perform(
    order: WorkOrder, res: Resources, *, sleep: Callable[[float], None] = time.sleep
) -> BeadResult:
    """The outcome of ``order``; raises the error that ended the attempt (see the module doc)."""
    for try_no in itertools.count():
        try:
            return on_cloud(order, res) if order.host == CLOUD_QUEUE else on_host(order, res)
        except YggError as exc:
            verdict = judge(exc, order, res, try_no=try_no)
            if verdict.fate is Fate.RETRY:
                sleep(verdict.delay_s)
                continue
            if verdict.fate is not Fate.FALLBACK:
                raise
            try:
                return on_cloud(order, res)
            except YggError as cloud_exc:
                raise _cloud_failed(order, exc, cloud_exc) from cloud_exc
    raise AssertionError("unreachable")  # pragma: no cover (itertools.count never ends)


async def aperform(
    order: WorkOrder,
    res: AsyncResources,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> BeadResult:
    """:func:`perform` on an event loop (the breaker's calls stay blocking: in memory)."""
    for try_no in itertools.count():
        try:
            if order.host == CLOUD_QUEUE:
                return await aon_cloud(order, res)
            return await aon_host(order, res)
        except YggError as exc:
            verdict = judge(exc, order, res, try_no=try_no)
            if verdict.fate is Fate.RETRY:
                await sleep(verdict.delay_s)
                continue
            if verdict.fate is not Fate.FALLBACK:
                raise
            try:
                return await aon_cloud(order, res)
            except YggError as cloud_exc:
                raise _cloud_failed(order, exc, cloud_exc) from cloud_exc
    raise AssertionError("unreachable")  # pragma: no cover (itertools.count never ends)


def judge(
    exc: YggError, order: WorkOrder, res: Resources | AsyncResources, *, try_no: int
) -> Verdict:
    """The verdict on one failed try, logged. A failure that has just opened the host's circuit
    counts as circuit open: no backoff is slept on a host the breaker will refuse. The attempt
    count does not matter here: when the attempt is over, whoever writes Beads decides REQUEUE
    or BLOCK with the bead's count."""
    failure = Failure.of(exc)
    on_host = order.host != CLOUD_QUEUE
    if on_host and failure.transient and res.breaker.state(order.host) is CircuitState.OPEN:
        failure = replace(failure, circuit_open=True)
    verdict = fate(
        failure,
        try_no=try_no,
        failed_attempts=0,
        retry=res.settings.retry,
        can_fall_back=res.fallback.enabled and on_host,
    )
    if verdict.fate is Fate.RETRY:
        log.info("%s on %s: try %d failed, again in %.1fs: %s",
                 order.bead_id, order.host, try_no + 1, verdict.delay_s, exc)  # fmt: skip
    elif verdict.fate is Fate.FALLBACK:
        log.info("%s: host %s unavailable (%s), trying the cloud fallback", order.bead_id,
                 order.host, exc)  # fmt: skip
    return verdict


def host_prompt(order: WorkOrder, settings: Settings) -> Prompt:
    limit = PromptLimit(order.host, settings.host(order.host).max_prompt_chars)
    return build_prompt(order.bead, kind=order.kind, limit=limit)


def cloud_prompt(order: WorkOrder, settings: Settings) -> Prompt:
    limit = PromptLimit(CLOUD, settings.cloud.max_prompt_chars)
    return build_prompt(order.bead, kind=order.kind, limit=limit)


def on_host(order: WorkOrder, res: Resources) -> BeadResult:
    """One try on the order's host, behind its breaker."""
    prompt = host_prompt(order, res.settings)
    res.breaker.check(order.host)
    try:
        completion = res.client.complete(order.host, prompt.text, tags=order.tags())
    except YggError as exc:
        _record(res, order.host, exc)
        raise
    res.breaker.record_success(order.host)
    return result_of(order, completion, prompt)


async def aon_host(order: WorkOrder, res: AsyncResources) -> BeadResult:
    """:func:`on_host` on an event loop."""
    prompt = host_prompt(order, res.settings)
    res.breaker.check(order.host)
    try:
        completion = await res.client.complete(order.host, prompt.text, tags=order.tags())
    except YggError as exc:
        _record(res, order.host, exc)
        raise
    res.breaker.record_success(order.host)
    return result_of(order, completion, prompt)


def on_cloud(order: WorkOrder, res: Resources) -> BeadResult:
    """The order on the cloud fallback (raises CloudBudgetExceeded when the budget is spent)."""
    prompt = cloud_prompt(order, res.settings)
    completion = res.fallback.complete(prompt.text, tags=order.tags())
    log.info("%s ran on the cloud fallback ($%.4f)", order.bead_id, completion.cost_usd)
    return result_of(order, completion, prompt)


async def aon_cloud(order: WorkOrder, res: AsyncResources) -> BeadResult:
    """:func:`on_cloud` on an event loop."""
    prompt = cloud_prompt(order, res.settings)
    completion = await res.fallback.acomplete(prompt.text, tags=order.tags())
    log.info("%s ran on the cloud fallback ($%.4f)", order.bead_id, completion.cost_usd)
    return result_of(order, completion, prompt)


def _record(res: Resources | AsyncResources, host: str, exc: YggError) -> None:
    """Tell the breaker: a transient failure counts against the host; a rejection of the
    request means the host is alive."""
    if isinstance(exc, TransientError):
        res.breaker.record_failure(host)
    elif isinstance(exc, HostRejected):
        res.breaker.record_success(host)


def _cloud_failed(order: WorkOrder, host_error: YggError, cloud_error: YggError) -> YggError:
    """After the cloud failed too, the attempt ends with the host's error (it stays transient).
    A spent budget is not logged again: the fallback logged it when it refused."""
    if not isinstance(cloud_error, CloudBudgetExceeded):
        log.warning("%s: cloud fallback failed: %s", order.bead_id, cloud_error)
    return host_error


def result_of(order: WorkOrder, completion: Completion, prompt: Prompt) -> BeadResult:
    """The outcome of ``order`` to write into Beads (every dispatcher's)."""
    return BeadResult(
        bead=order.bead_id,
        task_id=order.task_id,
        kind=order.kind,
        host=completion.host,
        model=completion.model,
        text=completion.text,
        prompt_tokens=completion.prompt_tokens or 0,
        completion_tokens=completion.completion_tokens or 0,
        total_s=completion.total_s,
        via_cloud=completion.via_cloud,
        cost_usd=completion.cost_usd,
        prompt_truncated=prompt.truncated,
        prompt_cut=prompt.cut_note(),
    )
