"""The error tree: each error is transient or permanent, and crosses process boundaries intact."""

from __future__ import annotations

import inspect
import pickle

import pytest

from yggcelery import errors

SAMPLES = [
    errors.BeadsFormatError(".beads/issues.jsonl", 17, "invalid JSON"),
    errors.IssueNotFound("bd-1", ".beads/issues.jsonl"),
    errors.ClaimConflict("bd-1", "alice"),
    errors.TransientBdError("update", "database is locked", code="locked"),
    errors.HostUnavailable("skadi-code", "connection refused"),
    errors.HostBusy("skadi-code", "HTTP 503 server busy", status=503),
    errors.HostRejected("skadi-code", "HTTP 404 model not found", status=404),
    errors.CircuitOpen("skadi-code", "circuit open"),
    errors.TaskCrashed("bd-1: delivered 3 times"),
]


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
def test_errors_pickle_to_the_same_class_message_and_fields(error: errors.YggError) -> None:
    """What the prefork pool sends back is the same error, not a base class of it."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__


def test_every_concrete_error_is_either_transient_or_permanent() -> None:
    """The dispatcher decides retry-or-block by class alone."""
    concrete = [
        cls for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.YggError)
        and cls not in (errors.YggError, errors.TransientError, errors.PermanentError,
                        errors.BeadsError, errors.HostError, errors.BdCommandError)
    ]  # fmt: skip
    assert concrete
    for cls in concrete:
        assert issubclass(cls, errors.TransientError) != issubclass(cls, errors.PermanentError), cls
