"""The one error path of ``ygg``: every expected failure becomes one ``ygg: error:`` line.

An operator's first commands during an outage (``ygg status``, ``ygg reconcile --once``) must say
what is wrong, where, and what to do, in one line with exit status 2. Only a bug shows a traceback.
Expected failures are the project's own errors (:class:`~yggcelery.errors.YggError`, which already
name what and where), a broker or result backend that cannot be reached or whose TLS certificate
does not verify, a port already taken, and a file that is missing or unreadable.
"""

from __future__ import annotations

import errno
import ssl
from urllib.parse import parse_qs, urlsplit

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
    tls = _tls_error(exc)
    if tls is not None and isinstance(exc, (*_UNREACHABLE, ssl.SSLError)):
        return _tls_failed(tls, settings)
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


def _where(settings: Settings | None) -> str:
    """`` (broker URL, result backend URL)``, passwords hidden; empty without settings."""
    if settings is None:
        return ""
    where = f" (broker {redact_url(settings.broker_url)}"
    if settings.result_backend != settings.broker_url:
        where += f", result backend {redact_url(settings.result_backend)}"
    return where + ")"


def _unreachable(exc: BaseException, settings: Settings | None) -> str:
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return (
        f"cannot reach the broker or result backend{_where(settings)}: {detail}; start it, or"
        " fix broker_url / result_backend (YGG_BROKER_URL, YGG_RESULT_BACKEND)"
    )


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error under ``exc``: redis-py and kombu raise their own connection errors with
    the :class:`ssl.SSLError` as the cause or context."""
    seen: BaseException | None = exc
    for _ in range(8):  # a chain is short; a cycle must not loop forever
        if seen is None or isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _tls_failed(exc: ssl.SSLError, settings: Settings | None) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = f"certificate verify failed ({exc.verify_message})"
    else:
        detail = exc.reason or " ".join(str(exc).split())
    urls = [] if settings is None else [settings.broker_url, settings.result_backend]
    cas = sorted(
        {ca for url in urls for ca in parse_qs(urlsplit(url).query).get("ssl_ca_certs", [])}
    )
    fix = (
        f"check that {', '.join(cas)} (ssl_ca_certs in the URL) is the CA that signed the"
        " server's certificate"
        if cas
        else "add ssl_ca_certs=/path/to/ca.pem to the rediss:// URL if a private CA signed"
        " the server's certificate"
    )
    return f"TLS to the broker or result backend{_where(settings)} failed: {detail}; {fix}"
