"""The one error tree of yggcelery.

Every error the package raises on purpose is a ``YggError``. Each is also either
``TransientError`` (worth retrying: the bead goes back to the queue) or ``PermanentError``
(retrying cannot help: the bead is marked ``blocked`` with the message as the reason), so a
caller decides what to do with ``isinstance`` and never by parsing messages::

    YggError
    ├── TransientError                     retry with backoff
    └── PermanentError                     block the bead
    YggError
    ├── ConfigError (permanent)            bad ygg.toml, env, route or broker URL
    │   └── AddressInUse                   a port ygg serves on (Flower, /metrics) is taken
    ├── BeadsError
    │   ├── BeadsFormatError (permanent)   a malformed line in a Beads file
    │   ├── IssueNotFound (permanent)
    │   ├── ClaimConflict (permanent)      another assignee holds the issue
    │   └── BdCommandError                 the bd CLI failed (transient or permanent by bd's code)
    ├── HostError                          a model host answered badly or not at all
    │   ├── HostUnavailable (transient)    connection refused, DNS, timeout
    │   ├── HostBusy (transient)           429 or 503 (Ollama's "server busy")
    │   ├── HostRejected (permanent)       any other 4xx: bad request, unknown model
    │   └── CircuitOpen (transient)        the host failed K times in a row; not tried now
    ├── CloudBudgetExceeded (transient)    the cloud fallback's daily budget is spent
    ├── WorkerLost (transient)             the worker died while running the task
    └── TaskCrashed (permanent)            delivered max_deliveries times, the worker died each time

Messages name the thing and the place, for example
``beads file .beads/issues.jsonl line 17: invalid JSON (Expecting ',' ...)`` or
``host skadi-code (http://skadi:11434): HTTP 503 server busy``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class YggError(Exception):
    """Root of every error yggcelery raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Celery's prefork pool pickles a task's exception to the worker's main process. The
        # default (``cls(*args)``) fails for constructors with other arguments, and Celery then
        # falls back to a base class (HostRejected arrived as PermanentError): rebuild exactly.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[YggError], args: tuple[Any, ...], state: dict[str, Any]) -> YggError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class TransientError(YggError):
    """Raised when the failure may go away by itself: retry later."""


class PermanentError(YggError):
    """Raised when retrying cannot help: the bead should be blocked with this reason."""


class ConfigError(PermanentError):
    """Raised when settings, a route, or a broker URL are invalid (at start-up)."""


class AddressInUse(ConfigError):
    """Raised when a server of ygg cannot listen because another process holds its port."""

    def __init__(self, what: str, address: str, port: int, *, setting: str) -> None:
        self.address = address
        self.port = port
        super().__init__(
            f"{what}: cannot listen on {address}:{port}, the address is already in use; stop"
            f" the process that holds it, or set {setting}"
        )


class BeadsError(YggError):
    """Raised when reading or writing Beads data fails."""


class BeadsFormatError(BeadsError, PermanentError):
    """Raised when a line of a Beads JSONL file cannot be used; names the file and line."""

    def __init__(self, path: Path | str, line_no: int, problem: str) -> None:
        self.path = Path(path)
        self.line_no = line_no
        self.problem = problem
        super().__init__(f"beads file {path} line {line_no}: {problem}")


class IssueNotFound(BeadsError, PermanentError):
    """Raised when an issue id is not in the store."""

    def __init__(self, issue_id: str, where: str) -> None:
        self.issue_id = issue_id
        super().__init__(f"issue {issue_id} not found in {where}")


class ClaimConflict(BeadsError, PermanentError):
    """Raised when claiming an issue that another assignee already holds."""

    def __init__(self, issue_id: str, holder: str) -> None:
        self.issue_id = issue_id
        self.holder = holder
        super().__init__(f"issue {issue_id} is already claimed by {holder!r}")


class BdCommandError(BeadsError):
    """Raised when the ``bd`` CLI exits non-zero; carries bd's error code when it gave one."""

    def __init__(self, command: str, message: str, *, code: str | None = None) -> None:
        self.command = command
        self.code = code
        detail = f" [{code}]" if code else ""
        super().__init__(f"bd {command} failed{detail}: {message}")


class TransientBdError(BdCommandError, TransientError):
    """Raised when bd failed for a reason that may pass (database locked, timeout)."""


class PermanentBdError(BdCommandError, PermanentError):
    """Raised when bd rejected the request itself (bad id, invalid field)."""


class HostError(YggError):
    """Raised when a model host fails; names the host and, when there was one, the status."""

    def __init__(self, host: str, message: str, *, status: int | None = None) -> None:
        self.host = host
        self.status = status
        super().__init__(f"host {host}: {message}")


class HostUnavailable(HostError, TransientError):
    """Raised when a host cannot be reached: connection refused, DNS failure, or timeout."""


class HostBusy(HostError, TransientError):
    """Raised when a host answers 429 or 503: it is full, try again later."""


class HostRejected(HostError, PermanentError):
    """Raised when a host refuses the request itself (4xx other than 429): bad input, no model."""


class CircuitOpen(HostError, TransientError):
    """Raised when a host's circuit breaker is open after repeated failures."""


class CloudBudgetExceeded(TransientError):
    """Raised when the cloud fallback would exceed its daily budget; the task stays queued."""


class WorkerLost(TransientError):
    """Raised when the worker process running a task died (killed, out of memory)."""


class TaskCrashed(PermanentError):
    """Raised when a task was delivered ``max_deliveries`` times and its worker died each time."""
