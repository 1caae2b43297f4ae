"""The one error path of ``ygg``: every expected failure becomes one ``ygg: error:`` line.

An operator's first commands during an outage (``ygg status``, ``ygg reconcile --once``) must say
what is wrong, where, and what to do, in one line with exit status 2. Only a bug shows a traceback.
Expected failures are the project's own errors (:class:`~yggcelery.errors.YggError`, which already
name what and where), a broker or result backend that cannot be reached, a port already taken,
and a file that is missing or unreadable.
"""

from __future__ import annotations

import errno

import redis
from kombu.exceptions import OperationalError

from yggcelery.errors import YggError
from yggcelery.settings import Settings, redact_url

#: Exit status of every expected failure.
EXIT_ERROR = 2

_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OperationalError, ConnectionError)


def one_line(exc: BaseException, settings: Settings | None) -> str | None:
    """The line to print for an expected failure (without ``ygg: error:``); None for a bug."""
    if isinstance(exc, YggError):
        return str(exc)
    if isinstance(exc, _UNREACHABLE):
        return _unreachable(exc, settings)
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return (
            f"address already in use ({exc.strerror}): stop the process that holds it, or pick"
            " another address or port"
        )
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return None


def _unreachable(exc: BaseException, settings: Settings | None) -> str:
    where = ""
    if settings is not None:
        where = f" (broker {redact_url(settings.broker_url)}"
        if settings.result_backend != settings.broker_url:
            where += f", result backend {redact_url(settings.result_backend)}"
        where += ")"
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return (
        f"cannot reach the broker or result backend{where}: {detail}; start it, or fix"
        " broker_url / result_backend (YGG_BROKER_URL, YGG_RESULT_BACKEND)"
    )
