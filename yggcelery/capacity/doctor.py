"""``ygg doctor`` as a library: every check a fleet needs, one line each, a fix for each failure.

:func:`run` runs them all and never stops at the first failure: an unreachable broker, a host
that answers garbage or a probe that times out is one failing line, and the next check runs.
The checks:

- broker and result backend answer (Redis ``PING`` with a short timeout; AMQP connects);
- per host (:mod:`.hostchecks`): its server answers, the model is installed / loaded, and the
  server's parallelism (reported, or measured for Ollama) equals the configured slots;
- workers (:mod:`.workerchecks`, when an app is given): one per host queue, concurrency = slots,
  consuming only its queue, and a control worker;
- the cloud key is present when the cloud fallback is on;
- beat and the Beads store: :func:`check_beat` and :func:`check_beads` are pure and take what
  the caller read (the last reconcile pass, the store opened), since those live elsewhere.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping

import httpx
import redis
from celery import Celery
from kombu import Connection
from kombu.exceptions import OperationalError

from yggcelery.capacity.check import Check, failed, passed
from yggcelery.capacity.hostchecks import host_checks
from yggcelery.capacity.probe import probe_all
from yggcelery.capacity.workerchecks import check_workers
from yggcelery.sentinel import from_url, is_sentinel_url
from yggcelery.settings import Settings, redact_url

_REDIS = ("redis://", "rediss://", "unix://")
#: ``Settings.sentinel_master``'s default: the name Sentinels know the primary by.
DEFAULT_MASTER = "mymaster"


def run(
    settings: Settings,
    *,
    client: httpx.Client | None = None,
    app: Celery | None = None,
    measure: bool = True,
    timeout_s: float = 2.0,
    extra: Iterable[Callable[[], Check]] = (),
) -> list[Check]:
    """Every check, in order: broker, backend, each host, workers (with ``app``), cloud, ``extra``.

    ``measure`` measures the parallelism of servers that do not report it (Ollama). ``extra``
    are further checks the caller adds (beat, Beads), run last.
    """
    checks = [
        check_url(
            "broker", settings.broker_url, timeout_s=timeout_s, master=settings.sentinel_master
        ),
        check_url(
            "result backend",
            settings.result_backend,
            timeout_s=timeout_s,
            master=settings.sentinel_master,
        ),
    ]
    checks += check_hosts(settings, client=client, measure=measure)
    if app is not None:
        checks += check_workers(app, settings, timeout_s=timeout_s)
    checks.append(check_cloud_key(settings))
    checks += [make() for make in extra]
    return checks


def check_hosts(
    settings: Settings, *, client: httpx.Client | None = None, measure: bool = True
) -> list[Check]:
    """Server, model and parallelism of every host, probed at once."""
    own = client is None
    http = client or httpx.Client()
    try:
        readings = probe_all(settings.hosts, http, capacity=settings.capacity, measure=measure)
    finally:
        if own:
            http.close()
    checks: list[Check] = []
    for name, reading in readings.items():
        checks += host_checks(name, settings.hosts[name], reading)
    return checks


def check_url(
    name: str, url: str, *, timeout_s: float = 2.0, master: str = DEFAULT_MASTER
) -> Check:
    """The broker or result backend at ``url`` answers now (for a ``sentinel://`` URL: the
    primary named ``master`` that the Sentinels point at)."""
    shown = redact_url(url)
    try:
        if url.startswith(_REDIS) or is_sentinel_url(url):
            _ping_redis(url, timeout_s, master)
        elif not url.startswith("memory://"):
            with Connection(url, connect_timeout=timeout_s) as connection:
                connection.ensure_connection(max_retries=1, timeout=math.ceil(timeout_s))
    except (redis.RedisError, OSError, OperationalError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return failed(
            name,
            f"{shown} does not answer ({reason})",
            f"start it, or fix {_setting(name)} (YGG_{_setting(name).upper()})",
        )
    return passed(name, f"{shown} answers")


def check_cloud_key(settings: Settings, environ: Mapping[str, str] | None = None) -> Check:
    """With the cloud fallback on, its key's environment variable is set here."""
    cloud = settings.cloud
    if not cloud.enabled:
        return passed("cloud fallback", "off (cloud.url not set)")
    env = os.environ if environ is None else environ
    if env.get(cloud.api_key_env):
        return passed("cloud fallback", f"{cloud.url} with ${cloud.api_key_env} set")
    return failed(
        "cloud fallback",
        f"on ({cloud.url}) but ${cloud.api_key_env} is not set",
        f"export {cloud.api_key_env}=... where the workers run, or unset cloud.url",
    )


def check_beat(
    *, last_pass_at: float | None, reconcile_every_s: float, now: float | None = None
) -> Check:
    """Beat is alive: its last reconcile pass is recent (within three periods)."""
    if last_pass_at is None:
        return failed(
            "beat", "no reconcile pass recorded", "run `ygg beat` (and `ygg worker control`)"
        )
    age_s = (time.time() if now is None else now) - last_pass_at
    if age_s > 3 * reconcile_every_s:
        return failed(
            "beat",
            f"last reconcile pass {age_s:.0f}s ago (every {reconcile_every_s:g}s expected)",
            "check `ygg beat` and `ygg worker control` are running",
        )
    return passed("beat", f"last reconcile pass {age_s:.0f}s ago")


def check_beads(*, store: str, error: str | None = None) -> Check:
    """The Beads store opened and read (``store`` names it: "jsonl .beads/issues.jsonl")."""
    if error is not None:
        return failed("beads", f"{store}: {error}", "fix beads.dir / beads.store in ygg.toml")
    return passed("beads", f"{store} readable")


def _ping_redis(url: str, timeout_s: float, master: str) -> None:
    client = from_url(url, master=master, socket_timeout=timeout_s,
                      socket_connect_timeout=timeout_s)  # fmt: skip
    try:
        client.ping()
    finally:
        client.close()


def _setting(name: str) -> str:
    return "broker_url" if name == "broker" else "result_backend"
